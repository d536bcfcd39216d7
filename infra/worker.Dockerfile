# Prefect worker for the process work pool `genre-crnn` (infra/docker-compose.yml, service
# `prefect-worker`). Build context: the project root; .dockerignore keeps out .venv, work/, scores/,
# tracking stores, .git, caches and env files. Holds no credentials: PREFECT_API_URL and
# MLFLOW_TRACKING_URI come from the container's environment at run time.
#
# Flow runs execute from this checkout in /app (deployments registered inside the container with
# `python typer_cli.py deploy --library /music --pool genre-crnn`), so work/ and scores/ are /app/work
# and /app/scores, both named volumes in the compose file.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app

WORKDIR /app

# Dependencies first, so editing the code does not reinstall torch.
COPY requirements.lock ./
RUN pip install uv==0.13.8 \
    && uv pip install --system --no-cache -r requirements.lock

COPY . .

# Unprivileged user; work/ and scores/ exist and belong to it, so fresh named volumes mounted there
# take that ownership.
RUN useradd --create-home --uid 1000 worker \
    && mkdir -p /app/work /app/scores \
    && chown worker:worker /app/work /app/scores
USER worker

CMD ["prefect", "worker", "start", "--pool", "genre-crnn", "--type", "process", "--with-healthcheck"]
