# The scoring service image (`lakehouse serve`): the package and its locked dependencies only.
# Build from the repository root: docker build -f deploy/serving.Dockerfile -t lakehouse-serving .
# It runs as a non-root user on a read-only root filesystem (see docker-compose.yml): the code
# and the virtual environment belong to root; models are fetched from the registry into /tmp.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy \
    MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1 FEAST_USAGE=False \
    LAKEHOUSE_HOME=/var/lib/lakehouse PATH=/opt/venv/bin:$PATH
RUN pip install --no-cache-dir uv
WORKDIR /app

# Dependency layer first: it changes only when the lock file does.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-install-project --no-dev

COPY lakehouse_assets lakehouse_assets
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 10002 serving && mkdir -p $LAKEHOUSE_HOME \
    && chown serving $LAKEHOUSE_HOME
USER serving
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health')"]
# Binding 0.0.0.0 inside the container: the service refuses unless LAKEHOUSE_SERVING__TOKEN is set.
CMD ["lakehouse", "serve", "--host", "0.0.0.0", "--port", "8000"]
