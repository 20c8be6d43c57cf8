-- One server, three databases: Dagster's storage, MLflow's backend store, Feast's registry.
CREATE USER lakehouse WITH PASSWORD 'change-me';
CREATE DATABASE dagster OWNER lakehouse;
CREATE DATABASE mlflow OWNER lakehouse;
CREATE DATABASE feast OWNER lakehouse;
