"""Dagster resources, one module per external system, and the plain connections they wrap
(``connections.py``: engines, MLflow, Feast, without Dagster). The engine/environment switch
lives here only. Import the module you need: this package imports nothing, so a process that
only uses a connection does not load Dagster."""
