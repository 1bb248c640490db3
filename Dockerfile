# syntax=docker/dockerfile:1
# gridpool container image: the pool and fleet controller (`gridpool run`), non-root.
#
#   docker build -t gridpool .
#   docker run -p 3333:3333 -p 8080:8080 -v ./gridpool.toml:/etc/gridpool/gridpool.toml:ro gridpool
#
# Stage 1 compiles the native sha256d extension (cffi, gcc) into a virtualenv; stage 2 copies
# only that virtualenv onto a slim Python without a compiler.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev libffi-dev \
 && rm -rf /var/lib/apt/lists/*
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/gridpool
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY native/ native/
COPY pool/ pool/
COPY miners/ miners/
# Fail the build, not the pool, when the extension did not compile or load.
RUN /opt/gridpool/bin/pip install . \
 && /opt/gridpool/bin/python -c "import pool._sha256d" \
 && /opt/gridpool/bin/gridpool info

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="gridpool" \
      org.opencontainers.image.description="Bitcoin Stratum V1 pool and grid-following fleet controller"
RUN groupadd --system --gid 10001 gridpool \
 && useradd --system --uid 10001 --gid gridpool --home-dir /var/lib/gridpool \
      --shell /usr/sbin/nologin gridpool \
 && install -d -o gridpool -g gridpool -m 0750 /var/lib/gridpool \
 && install -d -m 0755 /etc/gridpool
COPY --from=build /opt/gridpool /opt/gridpool
ENV PATH=/opt/gridpool/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER gridpool:gridpool
WORKDIR /var/lib/gridpool
VOLUME ["/var/lib/gridpool"]
# 3333: Stratum V1; 8080: HTTP /metrics, /healthz (set [http] listen = "0.0.0.0:8080").
EXPOSE 3333 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4).status != 200)"]
# SIGTERM drains: miners get client.reconnect before the process exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["gridpool"]
CMD ["run", "--config", "/etc/gridpool/gridpool.toml"]
