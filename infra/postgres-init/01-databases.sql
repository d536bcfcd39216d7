-- One database per server on the shared PostgreSQL: MLflow's backend store and Prefect's.
-- Run once by the postgres image's entrypoint (as POSTGRES_USER, via psql) when the data
-- volume is first initialised. Idempotent: \gexec runs CREATE DATABASE only where missing,
-- so it also works when POSTGRES_USER is itself called mlflow or prefect.
SELECT 'CREATE DATABASE mlflow'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'mlflow')\gexec

SELECT 'CREATE DATABASE prefect'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'prefect')\gexec
