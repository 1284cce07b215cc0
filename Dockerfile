# paradoxplex container image: `docker build -t paradoxplex .` (plain Dockerfile syntax: no
# BuildKit frontend image to fetch, so it builds where no registry is reachable).
#
#   docker run --rm -p 45888:45888 paradoxplex upstream-echo --listen 0.0.0.0:45888
#   docker run --rm -p 7999:7999 -p 127.0.0.1:8000:8000 -e PARADOXPLEX_ADMIN_TOKEN=secret \
#       --add-host=host.docker.internal:host-gateway \
#       -e PARADOXPLEX_UPSTREAM=host.docker.internal:45888 paradoxplex
#
# On Linux the name host.docker.internal (the host, where the first command published the
# echo upstream) exists only with --add-host=host.docker.internal:host-gateway, as above;
# Docker Desktop defines it by itself.
#
# Settings come from PARADOXPLEX_<NAME> environment variables (see the README's settings
# table). The image listens on 0.0.0.0 for both the listener and the admin API, so the
# admin API needs PARADOXPLEX_ADMIN_TOKEN: without it the node exits with a config error.
#
# Optional TOML config: mount it at /etc/paradoxplex/paradoxplex.toml and set
# PARADOXPLEX_CONFIG=/etc/paradoxplex/paradoxplex.toml (the node refuses a PARADOXPLEX_CONFIG
# that names a missing file, so the image does not set it). Environment variables beat the
# file: `listen` and `admin` are set below, so change them with PARADOXPLEX_LISTEN /
# PARADOXPLEX_ADMIN, not in the TOML.

ARG PYTHON_IMAGE=python:3.11-slim

# ---- builder: install the distribution and its dependencies into a venv -----------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/paradoxplex
WORKDIR /src
COPY pyproject.toml README.md ./
COPY shared ./shared
COPY node ./node
COPY admin ./admin
RUN /opt/paradoxplex/bin/pip install .

# ---- final: the venv only, no source tree, no build tools, not root ---------------------
FROM ${PYTHON_IMAGE}
RUN groupadd --system --gid 10001 paradoxplex \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin paradoxplex
COPY --from=builder /opt/paradoxplex /opt/paradoxplex
ENV PATH=/opt/paradoxplex/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PARADOXPLEX_LISTEN=0.0.0.0:7999 \
    PARADOXPLEX_ADMIN=0.0.0.0:8000
USER 10001:10001
WORKDIR /tmp
EXPOSE 7999 8000
# `paradoxplex health` probes the role the container runs (its PID 1): a node's /livez on the
# port of PARADOXPLEX_ADMIN (no token needed), or an upstream-echo's gRPC ready at its --listen
# port; it exits 1 with the reason when the probe fails.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["paradoxplex", "health", "--timeout", "2"]
ENTRYPOINT ["paradoxplex"]
CMD ["node"]
