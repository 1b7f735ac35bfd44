# syntax=docker/dockerfile:1
#
# order-proxy container image.
#
#   builder  - builds a virtualenv at /opt/venv holding the runtime dependencies
#              and the order-proxy wheel (nothing else: no pip cache, no source tree,
#              no build tools: those live in /opt/build, which stays behind).
#   runtime  - the same slim base, the venv copied in, a numeric non-root user,
#              no shell tooling added and nothing writable needed outside /tmp.
#
# Both stages use the same base image on purpose: the venv's python is a symlink to
# /usr/local/bin/python3.11, which must exist at the same path in the runtime stage.
# Pin the base by digest (python:3.11-slim-bookworm@sha256:...) in the release
# pipeline; the tag pins the Python minor version and the Debian release.

FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv && python -m venv /opt/build
ENV PATH="/opt/venv/bin:${PATH}"

WORKDIR /src

# Dependencies first, in their own layer: it is rebuilt only when the lock changes, not on
# every source edit. The lock (`make lock`, from pyproject.toml) pins every runtime
# package (and the "speed" extra) with the sha256 of each file: pip refuses anything else.
# The build tools (pip, setuptools, wheel) come from their own lock.
COPY requirements/runtime.txt requirements/build.txt ./requirements/
RUN /opt/build/bin/python -m pip install --require-hashes --requirement requirements/build.txt \
    && pip install --require-hashes --no-deps --requirement requirements/runtime.txt

# Then the package itself, as a wheel, without touching the dependencies again.
# pip compiles the .pyc files here, so the read-only runtime never needs to write them.
COPY pyproject.toml README.md ./
COPY proxy ./proxy
RUN /opt/build/bin/python -m pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
    && pip install --no-deps /tmp/wheels/*.whl


FROM python:3.11-slim-bookworm AS runtime

# Set by `make image` (the package version, the git commit, the repository's URL), so an
# image says which code it holds.
ARG VERSION=unknown
ARG REVISION=unknown
ARG SOURCE=unknown

LABEL org.opencontainers.image.title="order-proxy" \
      org.opencontainers.image.description="Read-through caching proxy in front of Juspay's Order Status API" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}"

# A named account for uid/gid 10001 so that tools showing users stay readable; the
# Kubernetes manifests also set runAsUser/runAsGroup 10001 explicitly.
RUN groupadd --system --gid 10001 order-proxy \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin order-proxy

COPY --from=builder /opt/venv /opt/venv

# PROXY_HOST=0.0.0.0: inside a container the proxy must listen beyond loopback to be
# reachable (gateway mode). The sidecar manifests override it with 127.0.0.1.
# HOME=/tmp: the only writable place (an emptyDir in Kubernetes).
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    PROXY_HOST=0.0.0.0 \
    PROXY_PORT=8080

USER 10001:10001
WORKDIR /tmp

EXPOSE 8080

# On SIGTERM the proxy turns /readyz false, drains in-flight requests for up to
# PROXY_DRAIN_SECONDS (20 s) and exits 0. Python runs as PID 1 and installs its own
# SIGTERM handler, so no init process is needed (it starts no child processes).
STOPSIGNAL SIGTERM

# For plain Docker and Compose only; Kubernetes ignores it and uses the pod's probes.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PROXY_PORT', '8080') + '/healthz', timeout=2)"]

ENTRYPOINT ["order-proxy"]
CMD ["serve"]
