-- One server, two databases: Dagster's storage and MLflow's backend store.
CREATE USER lakehouse WITH PASSWORD 'change-me';
CREATE DATABASE dagster OWNER lakehouse;
CREATE DATABASE mlflow OWNER lakehouse;
