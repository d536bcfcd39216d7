# MLflow tracking server for the team stack (infra/docker-compose.yml, service `mlflow`).
# Build context: the project root (for requirements.lock). Holds no credentials: the backend store
# URI, the artifact destination and the S3 keys come from the container's environment at run time
# (MLFLOW_BACKEND_STORE_URI, MLFLOW_ARTIFACTS_DESTINATION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The versions of requirements.lock, also for mlflow's own dependencies (used as constraints).
COPY requirements.lock /tmp/requirements.lock
RUN pip install --constraint /tmp/requirements.lock \
        mlflow==3.17.2 psycopg2-binary==2.9.13 boto3==1.44.5 \
    && rm /tmp/requirements.lock

RUN useradd --create-home --uid 1000 mlflow
USER mlflow
WORKDIR /home/mlflow

EXPOSE 5000
CMD ["mlflow", "server", "--host", "0.0.0.0", "--port", "5000", "--serve-artifacts"]
