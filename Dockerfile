# API and worker image (same code, different command).
FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY auth_service auth_service
COPY db db
COPY tasks tasks
COPY observability observability
RUN uv sync --frozen --no-dev
RUN useradd --system --uid 10001 app
USER app
EXPOSE 8000
CMD [".venv/bin/python", "-m", "auth_service", "api", "--host", "0.0.0.0", "--port", "8000"]
