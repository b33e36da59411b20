# The gateway image. Build from the repository root (the build context):
#   docker build -f docker/gateway.Dockerfile -t mro-gateway:local .
# Both services ship from one distribution, so the builder stage matches orchestrator.Dockerfile.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

FROM ${PYTHON_IMAGE} AS builder
COPY --from=uv /uv /usr/local/bin/uv
# The interpreter of the base image, never a downloaded one, so the venv runs in the final stage.
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_CACHE_DIR=/opt/uv-cache
WORKDIR /src
# Dependencies first: this layer is rebuilt only when the lock file changes.
COPY pyproject.toml uv.lock README.md ./
RUN --mount=type=cache,target=/opt/uv-cache \
    uv sync --frozen --no-dev --no-install-project --no-editable
COPY gateway ./gateway
COPY orchestrator ./orchestrator
# --no-editable installs the project into the venv, so the final stage needs no source tree.
RUN --mount=type=cache,target=/opt/uv-cache \
    uv sync --frozen --no-dev --no-editable

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 mro \
    && useradd --system --uid 10001 --gid mro --home-dir /nonexistent --no-create-home \
       --shell /usr/sbin/nologin mro \
    && mkdir -p /app/var \
    && chown mro:mro /app/var
# The venv stays owned by root: the service cannot modify its own code.
COPY --from=builder /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    MRO_GATEWAY_HOST=0.0.0.0 \
    MRO_GATEWAY_PORT=8000 \
    MRO_GATEWAY_DATABASE_URL=sqlite+aiosqlite:////app/var/gateway.db \
    MRO_GATEWAY_AUDIT_SPOOL_DIR=/app/var/audit-spool
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# No curl in the image: the interpreter does the probe (any error or non-2xx exits non-zero).
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request as r; r.urlopen('http://127.0.0.1:' + os.environ.get('MRO_GATEWAY_PORT', '8000') + '/healthz', timeout=4)"]
ENTRYPOINT ["mro-gateway"]
