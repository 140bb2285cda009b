# crm-kpi-streams worker image: `crm-kpi worker` by default; any other subcommand works
# too (`docker run IMAGE simulate --bootstrap kafka:9092 ...`, `... replay ...`).
#   docker build -t crm-kpi-streams:0.1.0 .
# Configuration: CRM_KPI_* environment variables (streams/settings.py, docs/metrics.md).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
# Only what the package build needs (see .dockerignore); every dependency ships as a wheel.
COPY pyproject.toml README.md ./
COPY streams ./streams
RUN pip install . && rm -rf /src

# Non-root; a writable working directory for faust's data dir (state itself lives in
# Kafka changelog topics). Mount an emptyDir/volume here with a read-only root filesystem.
RUN groupadd --system --gid 10001 crm \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/crm-kpi --create-home --shell /usr/sbin/nologin crm
WORKDIR /var/lib/crm-kpi
USER 10001:10001

# /metrics and /healthz must be reachable from outside the container.
ENV CRM_KPI_METRICS_HOST=0.0.0.0 \
    CRM_KPI_METRICS_PORT=9108
EXPOSE 9108

# /healthz answers once the topics exist and the metrics server runs (streams/runtime/worker.py).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CRM_KPI_METRICS_PORT', '9108'), timeout=3)"]

ENTRYPOINT ["crm-kpi"]
CMD ["worker"]
