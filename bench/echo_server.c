/* echo_server: the baseline for paradoxplex's benchmarks; one thread, epoll, echoes bytes.
 *
 *   echo_server HOST:PORT
 *
 * Prints "listening on HOST:PORT" (port 0 picks a free one) and serves until SIGTERM/SIGINT.
 * Level-triggered epoll; each readable socket is read once (up to 64 KiB) per wake-up and
 * the bytes are written straight back; what the kernel does not take is kept and written
 * when the socket is writable again (reading pauses meanwhile: backpressure, bounded).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 65536
#define LISTENER -1

struct pending {
    char *data;
    size_t len, off;
};

static volatile sig_atomic_t stop;
static struct pending *pend; /* indexed by fd */
static int maxfd;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    if (fd < maxfd) {
        free(pend[fd].data);
        pend[fd] = (struct pending){0};
    }
}

static void watch(int ep, int op, int fd, uint32_t events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(ep, op, fd, &ev);
}

static void flush(int ep, int fd) {
    struct pending *p = &pend[fd];
    while (p->off < p->len) {
        ssize_t w = write(fd, p->data + p->off, p->len - p->off);
        if (w < 0) {
            if (errno == EAGAIN) return;
            drop(ep, fd);
            return;
        }
        p->off += (size_t)w;
    }
    p->len = p->off = 0;
    watch(ep, EPOLL_CTL_MOD, fd, EPOLLIN);
}

static void echo(int ep, int fd, char *buf) {
    ssize_t r = read(fd, buf, BUF);
    if (r == 0 || (r < 0 && errno != EAGAIN)) {
        drop(ep, fd);
        return;
    }
    if (r < 0) return;
    ssize_t w = write(fd, buf, (size_t)r);
    if (w < 0 && errno != EAGAIN) {
        drop(ep, fd);
        return;
    }
    if (w < 0) w = 0;
    if (w < r && fd < maxfd) { /* keep the rest; stop reading until it is written */
        struct pending *p = &pend[fd];
        p->data = realloc(p->data, (size_t)(r - w));
        memcpy(p->data, buf + w, (size_t)(r - w));
        p->len = (size_t)(r - w);
        p->off = 0;
        watch(ep, EPOLL_CTL_MOD, fd, EPOLLOUT);
    }
}

int main(int argc, char **argv) {
    if (argc != 2 || !strchr(argv[1], ':')) {
        fprintf(stderr, "usage: echo_server HOST:PORT\n");
        return 2;
    }
    char host[64];
    char *colon = strrchr(argv[1], ':');
    snprintf(host, sizeof host, "%.*s", (int)(colon - argv[1]), argv[1]);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "echo_server: bad host %s\n", host);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(ls, 4096) < 0) {
        perror("echo_server: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(ls, (struct sockaddr *)&addr, &alen);
    printf("listening on %s:%d\n", host, ntohs(addr.sin_port));
    fflush(stdout);
    maxfd = (int)sysconf(_SC_OPEN_MAX);
    if (maxfd <= 0 || maxfd > 1 << 20) maxfd = 1 << 16;
    pend = calloc((size_t)maxfd, sizeof *pend);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = LISTENER};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event evs[1024];
    char *buf = malloc(BUF);
    while (!stop) {
        int n = epoll_wait(ep, evs, 1024, 200);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == LISTENER) {
                for (;;) {
                    int c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                    if (c < 0) break;
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    watch(ep, EPOLL_CTL_ADD, c, EPOLLIN);
                }
            } else if (evs[i].events & EPOLLOUT) {
                flush(ep, fd);
            } else {
                echo(ep, fd, buf);
            }
        }
    }
    return 0;
}
