/* loadgen: a small closed-loop TCP load generator for paradoxplex's benchmarks.
 *
 * One thread, epoll, non-blocking sockets, 127.0.0.1 targets. Three modes:
 *
 *   loadgen rr    -a HOST:PORT [-a ...] -c CONNS [-s BYTES] [-w WARMUP_S] [-d DURATION_S]
 *                 [-D PAUSE_S]
 *       Each connection sends a BYTES-byte request (default 64), waits for the BYTES-byte
 *       echo, and repeats (the first request PAUSE_S after every socket is connected). After the warm-up, counts round trips and their latencies for
 *       DURATION_S seconds, then stops by itself.
 *   loadgen idle  -a HOST:PORT [-a ...] -c CONNS [-t HOLD_S]
 *       Connects CONNS sockets and holds them, idle, until a line (or EOF) on stdin or HOLD_S.
 *   loadgen bcast -a HOST:PORT [-a ...] -c CONNS -k BYTES -T HOST:PORT -F FILE [-d WAIT_S]
 *       Connects CONNS sockets, waits for a line on stdin, sends FILE's bytes (an HTTP
 *       request) to the trigger address, and waits (at most WAIT_S) until every socket has
 *       received BYTES bytes; reports the time from the trigger to the first, median and
 *       last arrival.
 *   loadgen storm -a HOST:PORT [-a ...] -c CONNS [-s BYTES] [-r RATE] [-d WAIT_S] [-t HOLD_S]
 *       A reconnect storm: CONNS connects paced at RATE per second (0: as fast as -C allows),
 *       each socket sends one BYTES-byte message as soon as it is connected and waits for
 *       its echo. Emits "start" when the first connect is made, "answered" when every
 *       socket got its echo (or WAIT_S passed): times from the start to the last connect
 *       and the last answer, answer latencies (connect call -> echo) and the answers per
 *       10 ms over time; then holds the sockets until a line on stdin (or HOLD_S).
 *
 * Connections are spread round robin over the -a addresses; at most -C (default 256)
 * connects are in flight at once; connecting (and waiting for stdin) is bounded by -t
 * LIMIT_S (default 30). Progress and the result are JSON lines on stdout:
 * {"event":"connected",...}, {"event":"start"}, {"event":"end"}, {"event":"result",...}.
 * The loadgen's own CPU time (getrusage) is part of the result. A SIGALRM set from the
 * limits ends the process even if a peer misbehaves.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define MAX_TARGETS 16
#define ID_STDIN 0xFFFFFFFEu
#define ID_TRIGGER 0xFFFFFFFDu
#define MAX_EVENTS 1024

enum { MODE_RR, MODE_IDLE, MODE_BCAST, MODE_STORM };
enum { C_CONNECTING, C_OPEN, C_DEAD, C_PENDING };

struct conn {
    int fd;
    uint8_t state;
    uint8_t want_out;
    uint32_t sent;     /* bytes of the current request written */
    uint32_t got;      /* bytes of the current response (or broadcast) received */
    uint64_t seq;
    uint64_t sent_ns;  /* when the current request was first written */
    uint64_t done_ns;  /* bcast: when BYTES had arrived */
};

static struct sockaddr_in targets[MAX_TARGETS];
static int ntargets;
static struct conn *conns;
static unsigned char *reqs, *resps; /* rr: size bytes per connection */
static int ep;
static long nconns = 1, size = 64, inflight_max = 256;
static double warmup = 1.0, duration = 5.0, limit = 30.0, first_pause = 0.0, rate = 0.0;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int parse_addr(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (!colon || colon - text >= (long)sizeof host) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = 0;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

static void emit(const char *line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void ep_ctl(int op, int fd, uint32_t events, uint32_t id) {
    struct epoll_event ev = {.events = events, .data.u32 = id};
    if (epoll_ctl(ep, op, fd, &ev) < 0 && op != EPOLL_CTL_DEL) die("epoll_ctl");
}

static void kill_conn(struct conn *c) {
    if (c->state == C_DEAD) return;
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
}

/* ---- connect phase ------------------------------------------------------------------- */

static long connect_all(double timeout_s, long *failed_out, double *seconds_out) {
    long next = 0, inflight = 0, open = 0, failed = 0;
    uint64_t start = now_ns(), deadline = start + (uint64_t)(timeout_s * 1e9);
    struct epoll_event evs[MAX_EVENTS];
    for (long i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].state = C_PENDING;
    }
    while (open + failed < nconns && now_ns() < deadline) {
        while (next < nconns && inflight < inflight_max) {
            struct conn *c = &conns[next];
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket");
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_in *to = &targets[next % ntargets];
            c->fd = fd;
            c->state = C_CONNECTING;
            if (connect(fd, (struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
                kill_conn(c);
                failed++;
            } else {
                ep_ctl(EPOLL_CTL_ADD, fd, EPOLLOUT, (uint32_t)next);
                inflight++;
            }
            next++;
        }
        int n = epoll_wait(ep, evs, MAX_EVENTS, 50);
        for (int i = 0; i < n; i++) {
            uint32_t id = evs[i].data.u32;
            if (id >= (uint32_t)nconns) continue;
            struct conn *c = &conns[id];
            if (c->state != C_CONNECTING) continue;
            int err = 0;
            socklen_t len = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
            inflight--;
            if (err) {
                kill_conn(c);
                failed++;
            } else {
                c->state = C_OPEN;
                ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLRDHUP, id);
                open++;
            }
        }
    }
    for (long i = 0; i < nconns; i++) /* timed out or never started */
        if (conns[i].state == C_CONNECTING || conns[i].state == C_PENDING) {
            kill_conn(&conns[i]);
            failed++;
        }
    *failed_out = failed;
    *seconds_out = (double)(now_ns() - start) / 1e9;
    return open;
}

static void emit_connected(long open, long failed, double seconds) {
    char line[256];
    snprintf(line, sizeof line,
             "{\"event\":\"connected\",\"connected\":%ld,\"failed\":%ld,\"seconds\":%.3f}", open,
             failed, seconds);
    emit(line);
}

/* ---- rr mode ------------------------------------------------------------------------- */

static uint32_t *samples;
static size_t nsamples, capsamples;

static void record(uint64_t ns) {
    if (nsamples == capsamples) {
        capsamples = capsamples ? capsamples * 2 : 1 << 20;
        samples = realloc(samples, capsamples * sizeof *samples);
        if (!samples) die("realloc");
    }
    samples[nsamples++] = ns > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)ns;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static double pct_us(const uint32_t *v, size_t n, double q) {
    if (!n) return -1;
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > n) rank = n;
    return v[rank - 1] / 1000.0;
}

static void fill_request(long i) {
    struct conn *c = &conns[i];
    unsigned char *r = reqs + (size_t)i * (size_t)size;
    uint64_t idx = (uint64_t)i;
    memset(r, 'a' + (int)(c->seq % 26), (size_t)size);
    if (size >= 16) {
        memcpy(r, &idx, 8);
        memcpy(r + 8, &c->seq, 8);
    }
    c->sent = 0;
    c->got = 0;
}

static void send_request(long i, uint64_t t) {
    struct conn *c = &conns[i];
    if (c->sent == 0) c->sent_ns = t;
    while (c->sent < (uint32_t)size) {
        ssize_t w = write(c->fd, reqs + (size_t)i * (size_t)size + c->sent, (size_t)(size - c->sent));
        if (w < 0) {
            if (errno == EAGAIN) break;
            kill_conn(c);
            return;
        }
        c->sent += (uint32_t)w;
    }
    uint8_t want = c->sent < (uint32_t)size;
    if (want != c->want_out) {
        c->want_out = want;
        ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLRDHUP | (want ? EPOLLOUT : 0), (uint32_t)i);
    }
}

static int run_rr(void) {
    long failed;
    double conn_s;
    long open = connect_all(limit, &failed, &conn_s);
    emit_connected(open, failed, conn_s);
    if (open == 0) {
        emit("{\"event\":\"result\",\"error\":\"no connection\"}");
        return 1;
    }
    if (first_pause > 0) usleep((useconds_t)(first_pause * 1e6)); /* let the fleet learn the sockets */
    reqs = malloc((size_t)nconns * (size_t)size);
    resps = malloc((size_t)nconns * (size_t)size);
    if (!reqs || !resps) die("malloc");
    uint64_t t0 = now_ns();
    for (long i = 0; i < nconns; i++)
        if (conns[i].state == C_OPEN) {
            fill_request(i);
            send_request(i, t0);
        }
    uint64_t measure_at = t0 + (uint64_t)(warmup * 1e9);
    uint64_t end_at = measure_at + (uint64_t)(duration * 1e9);
    int measuring = 0;
    long msgs = 0, mismatches = 0, closed = 0;
    double cpu0 = 0, cpu1 = 0;
    uint64_t m0 = 0, m1 = 0;
    char *scratch = malloc(65536);
    struct epoll_event evs[MAX_EVENTS];
    for (;;) {
        uint64_t t = now_ns();
        if (!measuring && t >= measure_at) {
            measuring = 1;
            m0 = t;
            cpu0 = cpu_seconds();
            emit("{\"event\":\"start\"}");
        }
        if (t >= end_at) {
            m1 = t;
            cpu1 = cpu_seconds();
            emit("{\"event\":\"end\"}");
            break;
        }
        uint64_t until = measuring ? end_at : measure_at;
        int wait_ms = (int)((until - t) / 1000000ull) + 1;
        int n = epoll_wait(ep, evs, MAX_EVENTS, wait_ms < 100 ? wait_ms : 100);
        t = now_ns();
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            struct conn *c = &conns[id];
            if (c->state != C_OPEN) continue;
            if (evs[e].events & EPOLLOUT) send_request(id, t);
            if (c->state != C_OPEN || !(evs[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
                continue;
            unsigned char *resp = resps + (size_t)id * (size_t)size;
            for (;;) {
                uint32_t want = (uint32_t)size - c->got;
                ssize_t r = read(c->fd, want ? resp + c->got : (unsigned char *)scratch,
                                 want ? want : 65536);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    kill_conn(c);
                    closed++;
                    break;
                }
                if (r < 0) break;
                if (!want) { /* bytes nobody asked for */
                    mismatches++;
                    continue;
                }
                c->got += (uint32_t)r;
                if (c->got < (uint32_t)size) continue;
                if (c->sent < (uint32_t)size ||
                    memcmp(resp, reqs + (size_t)id * (size_t)size, (size_t)size) != 0)
                    mismatches++;
                if (measuring && t < end_at) {
                    msgs++;
                    record(t - c->sent_ns);
                }
                c->seq++;
                fill_request(id);
                send_request(id, t);
                break;
            }
        }
    }
    /* requests that have waited long at the end are stalled (lost or stuck) */
    long stalled = 0, alive = 0;
    uint64_t oldest = 0;
    for (long i = 0; i < nconns; i++) {
        struct conn *c = &conns[i];
        if (c->state != C_OPEN) continue;
        alive++;
        uint64_t age = m1 - c->sent_ns;
        if (age > oldest) oldest = age;
        if (age > 1000000000ull) stalled++;
    }
    qsort(samples, nsamples, sizeof *samples, cmp_u32);
    double wall = (double)(m1 - m0) / 1e9, cpu = cpu1 - cpu0;
    double mean = 0;
    for (size_t i = 0; i < nsamples; i++) mean += samples[i];
    mean = nsamples ? mean / (double)nsamples / 1000.0 : -1;
    char line[1024];
    snprintf(line, sizeof line,
             "{\"event\":\"result\",\"mode\":\"rr\",\"conns\":%ld,\"open\":%ld,\"size\":%ld,"
             "\"seconds\":%.4f,\"msgs\":%ld,\"msgs_per_s\":%.1f,\"mean_us\":%.2f,"
             "\"p50_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%.2f,\"max_us\":%.2f,"
             "\"cpu_s\":%.4f,\"cpu_pct\":%.2f,\"mismatches\":%ld,\"closed\":%ld,"
             "\"stalled\":%ld,\"oldest_ms\":%.1f}",
             nconns, alive, size, wall, msgs, wall > 0 ? (double)msgs / wall : 0, mean,
             pct_us(samples, nsamples, 0.50), pct_us(samples, nsamples, 0.99),
             pct_us(samples, nsamples, 0.999), pct_us(samples, nsamples, 1.0), cpu,
             wall > 0 ? 100.0 * cpu / wall : 0, mismatches, closed, stalled, oldest / 1e6);
    emit(line);
    return 0;
}

/* ---- idle and bcast modes ------------------------------------------------------------ */

/* Reads what arrives on sockets; returns 1 when stdin gave a line or closed. */
static int pump(int timeout_ms, long *closed, uint64_t *arrived_at_first) {
    struct epoll_event evs[MAX_EVENTS];
    char buf[65536];
    int n = epoll_wait(ep, evs, MAX_EVENTS, timeout_ms);
    uint64_t t = now_ns();
    int go = 0;
    for (int e = 0; e < n; e++) {
        uint32_t id = evs[e].data.u32;
        if (id == ID_STDIN) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0 || memchr(buf, '\n', (size_t)r)) go = 1;
            if (r <= 0) ep_ctl(EPOLL_CTL_DEL, 0, 0, ID_STDIN);
            continue;
        }
        if (id >= (uint32_t)nconns) continue;
        struct conn *c = &conns[id];
        if (c->state != C_OPEN) continue;
        for (;;) {
            ssize_t r = read(c->fd, buf, sizeof buf);
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                kill_conn(c);
                (*closed)++;
                break;
            }
            if (r < 0) break;
            if (c->got < (uint32_t)size && c->got + (uint32_t)r >= (uint32_t)size) c->done_ns = t;
            c->got += (uint32_t)r;
            if (arrived_at_first && !*arrived_at_first) *arrived_at_first = t;
        }
    }
    return go;
}

static int run_idle(void) {
    long failed, closed = 0;
    double conn_s;
    long open = connect_all(limit, &failed, &conn_s);
    emit_connected(open, failed, conn_s);
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    ep_ctl(EPOLL_CTL_ADD, 0, EPOLLIN, ID_STDIN);
    uint64_t deadline = now_ns() + (uint64_t)(duration * 1e9);
    while (now_ns() < deadline)
        if (pump(100, &closed, NULL)) break;
    char line[256];
    snprintf(line, sizeof line,
             "{\"event\":\"result\",\"mode\":\"idle\",\"conns\":%ld,\"open\":%ld,"
             "\"closed\":%ld,\"cpu_s\":%.4f}",
             nconns, open - closed, closed, cpu_seconds());
    emit(line);
    return 0;
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    static char data[1 << 20];
    *len = fread(data, 1, sizeof data, f);
    fclose(f);
    return data;
}

static int run_bcast(const char *trigger, const char *file) {
    struct sockaddr_in to;
    if (!trigger || !file || parse_addr(trigger, &to) < 0) {
        fprintf(stderr, "loadgen: bcast needs -T HOST:PORT and -F FILE\n");
        return 2;
    }
    size_t len;
    char *request = read_file(file, &len);
    long failed, closed = 0;
    double conn_s;
    long open = connect_all(limit, &failed, &conn_s);
    emit_connected(open, failed, conn_s);
    for (long i = 0; i < nconns; i++) conns[i].got = 0, conns[i].done_ns = 0;
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    ep_ctl(EPOLL_CTL_ADD, 0, EPOLLIN, ID_STDIN);
    uint64_t deadline = now_ns() + (uint64_t)(limit * 1e9);
    while (now_ns() < deadline)
        if (pump(100, &closed, NULL)) break;
    ep_ctl(EPOLL_CTL_DEL, 0, 0, ID_STDIN);
    /* the trigger: a blocking connect and write, then the answer is read with the rest */
    int tfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tfd < 0 || connect(tfd, (struct sockaddr *)&to, sizeof to) < 0) die("trigger connect");
    double cpu0 = cpu_seconds();
    uint64_t t0 = now_ns(), first = 0;
    if (write(tfd, request, len) != (ssize_t)len) die("trigger write");
    char status[64] = "";
    fcntl(tfd, F_SETFL, O_NONBLOCK);
    ep_ctl(EPOLL_CTL_ADD, tfd, EPOLLIN, ID_TRIGGER);
    deadline = now_ns() + (uint64_t)(duration * 1e9);
    long done = 0;
    while (now_ns() < deadline) {
        struct epoll_event evs[MAX_EVENTS];
        char buf[65536];
        int n = epoll_wait(ep, evs, MAX_EVENTS, 100);
        uint64_t t = now_ns();
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            if (id == ID_TRIGGER) {
                ssize_t r = read(tfd, buf, sizeof buf - 1);
                if (r > 0 && !status[0]) {
                    buf[r] = 0;
                    sscanf(buf, "HTTP/%*s %63s", status);
                }
                if (r <= 0) ep_ctl(EPOLL_CTL_DEL, tfd, 0, ID_TRIGGER);
                continue;
            }
            if (id >= (uint32_t)nconns) continue;
            struct conn *c = &conns[id];
            if (c->state != C_OPEN) continue;
            for (;;) {
                ssize_t r = read(c->fd, buf, sizeof buf);
                if (r == 0 || (r < 0 && errno != EAGAIN)) {
                    kill_conn(c);
                    closed++;
                    break;
                }
                if (r < 0) break;
                if (!first) first = t;
                if (c->got < (uint32_t)size && c->got + (uint32_t)r >= (uint32_t)size) {
                    c->done_ns = t;
                    done++;
                }
                c->got += (uint32_t)r;
            }
        }
        if (done >= open - closed && status[0]) break;
    }
    double cpu = cpu_seconds() - cpu0;
    size_t k = 0;
    uint32_t *arrivals = malloc(sizeof(uint32_t) * (size_t)(nconns + 1));
    for (long i = 0; i < nconns; i++)
        if (conns[i].done_ns) {
            uint64_t d = conns[i].done_ns - t0;
            arrivals[k++] = d > 0xFFFFFFFFull ? 0xFFFFFFFFu : (uint32_t)d;
        }
    qsort(arrivals, k, sizeof *arrivals, cmp_u32);
    char line[512];
    snprintf(line, sizeof line,
             "{\"event\":\"result\",\"mode\":\"bcast\",\"conns\":%ld,\"open\":%ld,"
             "\"received\":%zu,\"closed\":%ld,\"first_us\":%.1f,\"p50_us\":%.1f,"
             "\"p99_us\":%.1f,\"last_us\":%.1f,\"trigger_status\":\"%s\",\"cpu_s\":%.4f}",
             nconns, open, k, closed, pct_us(arrivals, k, 0.0), pct_us(arrivals, k, 0.5),
             pct_us(arrivals, k, 0.99), pct_us(arrivals, k, 1.0), status, cpu);
    emit(line);
    close(tfd);
    return 0;
}

/* ---- storm mode ---------------------------------------------------------------------- */

#define STORM_BUCKET_NS 10000000ull /* answers are counted per 10 ms */
#define STORM_BUCKETS 3000

static void storm_connected(long i, uint64_t t) {
    struct conn *c = &conns[i];
    c->state = C_OPEN;
    ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN | EPOLLRDHUP, (uint32_t)i);
    fill_request(i);
    send_request(i, c->sent_ns); /* latency counts from the connect call */
    (void)t;
}

/* Reads a socket's echo; returns 1 when it is complete (and checked). */
static int storm_read(long i, long *closed, long *mismatches) {
    struct conn *c = &conns[i];
    unsigned char *resp = resps + (size_t)i * (size_t)size;
    char scratch[512];
    for (;;) {
        uint32_t want = (uint32_t)size - c->got;
        ssize_t r = read(c->fd, want ? resp + c->got : (unsigned char *)scratch,
                         want ? want : sizeof scratch);
        if (r == 0 || (r < 0 && errno != EAGAIN)) {
            kill_conn(c);
            (*closed)++;
            return 0;
        }
        if (r < 0) return 0;
        if (!want) continue;
        c->got += (uint32_t)r;
        if (c->got < (uint32_t)size) continue;
        if (memcmp(resp, reqs + (size_t)i * (size_t)size, (size_t)size) != 0) (*mismatches)++;
        return 1;
    }
}

static int run_storm(void) {
    reqs = malloc((size_t)nconns * (size_t)size);
    resps = malloc((size_t)nconns * (size_t)size);
    uint32_t *buckets = calloc(STORM_BUCKETS, sizeof *buckets);
    uint32_t *latency = malloc(sizeof(uint32_t) * (size_t)nconns);
    if (!reqs || !resps || !buckets || !latency) die("malloc");
    for (long i = 0; i < nconns; i++) conns[i].fd = -1, conns[i].state = C_PENDING;
    struct epoll_event evs[MAX_EVENTS];
    long next = 0, inflight = 0, open = 0, failed = 0, answered = 0, closed = 0, mismatches = 0;
    uint64_t t0 = now_ns(), last_connect = t0, last_answer = t0;
    uint64_t deadline = t0 + (uint64_t)(duration * 1e9);
    double cpu0 = cpu_seconds();
    emit("{\"event\":\"start\"}");
    while (answered + failed + closed < nconns && now_ns() < deadline) {
        uint64_t t = now_ns();
        long due = rate > 0 ? (long)((double)(t - t0) / 1e9 * rate) + 1 : nconns;
        while (next < nconns && next < due && inflight < inflight_max) {
            struct conn *c = &conns[next];
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            if (fd < 0) die("socket");
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            struct sockaddr_in *to = &targets[next % ntargets];
            c->fd = fd;
            c->state = C_CONNECTING;
            c->sent_ns = now_ns();
            if (connect(fd, (struct sockaddr *)to, sizeof *to) < 0 && errno != EINPROGRESS) {
                kill_conn(c);
                failed++;
            } else {
                ep_ctl(EPOLL_CTL_ADD, fd, EPOLLOUT, (uint32_t)next);
                inflight++;
            }
            next++;
        }
        int n = epoll_wait(ep, evs, MAX_EVENTS, next < nconns ? 1 : 20);
        t = now_ns();
        for (int e = 0; e < n; e++) {
            uint32_t id = evs[e].data.u32;
            if (id >= (uint32_t)nconns) continue;
            struct conn *c = &conns[id];
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                inflight--;
                if (err) {
                    kill_conn(c);
                    failed++;
                    continue;
                }
                open++;
                last_connect = t;
                storm_connected(id, t);
                continue;
            }
            if (c->state != C_OPEN) continue;
            if (evs[e].events & EPOLLOUT) send_request(id, c->sent_ns);
            if (c->state != C_OPEN || c->done_ns) continue;
            if (!storm_read(id, &closed, &mismatches)) continue;
            c->done_ns = t;
            latency[answered++] = (uint32_t)((t - c->sent_ns) > 0xFFFFFFFFull ? 0xFFFFFFFFull
                                                                              : t - c->sent_ns);
            last_answer = t;
            uint64_t b = (t - t0) / STORM_BUCKET_NS;
            buckets[b < STORM_BUCKETS ? b : STORM_BUCKETS - 1]++;
        }
    }
    double cpu = cpu_seconds() - cpu0;
    qsort(latency, (size_t)answered, sizeof *latency, cmp_u32);
    size_t nb = (size_t)((last_answer - t0) / STORM_BUCKET_NS) + 1;
    if (nb > STORM_BUCKETS) nb = STORM_BUCKETS;
    size_t cap = 1024 + nb * 12;
    char *line = malloc(cap);
    if (!line) die("malloc");
    int at = snprintf(line, cap,
                      "{\"event\":\"answered\",\"conns\":%ld,\"connected\":%ld,\"failed\":%ld,"
                      "\"answered\":%ld,\"closed\":%ld,\"mismatches\":%ld,\"connect_s\":%.4f,"
                      "\"answer_s\":%.4f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
                      "\"cpu_s\":%.4f,\"bucket_ms\":%llu,\"answers\":[",
                      nconns, open, failed, answered, closed, mismatches,
                      (double)(last_connect - t0) / 1e9, (double)(last_answer - t0) / 1e9,
                      pct_us(latency, (size_t)answered, 0.5), pct_us(latency, (size_t)answered, 0.99),
                      pct_us(latency, (size_t)answered, 1.0), cpu,
                      STORM_BUCKET_NS / 1000000ull);
    for (size_t b = 0; b < nb; b++)
        at += snprintf(line + at, cap - (size_t)at, b ? ",%u" : "%u", buckets[b]);
    snprintf(line + at, cap - (size_t)at, "]}");
    emit(line);
    free(line);
    /* hold the sockets (the fleet still lists them) until told */
    fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
    ep_ctl(EPOLL_CTL_ADD, 0, EPOLLIN, ID_STDIN);
    uint64_t hold = now_ns() + (uint64_t)(limit * 1e9);
    while (now_ns() < hold)
        if (pump(100, &closed, NULL)) break;
    char end[160];
    snprintf(end, sizeof end, "{\"event\":\"result\",\"mode\":\"storm\",\"open\":%ld,\"closed\":%ld}",
             open - closed, closed);
    emit(end);
    return 0;
}

static void usage(void) {
    fprintf(stderr,
            "usage: loadgen rr|idle|bcast|storm -a HOST:PORT [-a ...] [-c CONNS] [-s BYTES]\n"
            "               [-w WARMUP_S] [-d SECONDS] [-t LIMIT_S] [-C INFLIGHT] [-D PAUSE_S]\n"
            "               [-k BYTES -T HOST:PORT -F FILE] [-r RATE]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2) usage();
    int mode = !strcmp(argv[1], "rr")     ? MODE_RR
               : !strcmp(argv[1], "idle") ? MODE_IDLE
               : !strcmp(argv[1], "bcast") ? MODE_BCAST
               : !strcmp(argv[1], "storm") ? MODE_STORM
                                           : -1;
    if (mode < 0) usage();
    const char *trigger = NULL, *file = NULL;
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "a:c:s:w:d:t:C:k:T:F:D:r:")) != -1) {
        switch (opt) {
        case 'a':
            if (ntargets == MAX_TARGETS || parse_addr(optarg, &targets[ntargets]) < 0) usage();
            ntargets++;
            break;
        case 'c': nconns = atol(optarg); break;
        case 's':
        case 'k': size = atol(optarg); break;
        case 'w': warmup = atof(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 't': limit = atof(optarg); break;
        case 'C': inflight_max = atol(optarg); break;
        case 'D': first_pause = atof(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'T': trigger = optarg; break;
        case 'F': file = optarg; break;
        default: usage();
        }
    }
    if (!ntargets || nconns < 1 || size < 1 || size > 65536) usage();
    if (mode == MODE_IDLE) duration = limit; /* the hold */
    signal(SIGPIPE, SIG_IGN);
    alarm((unsigned)(limit * 2 + warmup + duration + 30));
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die("epoll_create1");
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    if (mode == MODE_RR) return run_rr();
    if (mode == MODE_IDLE) return run_idle();
    if (mode == MODE_STORM) return run_storm();
    return run_bcast(trigger, file);
}
