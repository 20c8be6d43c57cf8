"""The monitoring tables (Delta time series under lake/monitoring). Kept apart from the monitors,
so readers (sensors, maintenance) do not import Evidently."""

DRIFT_TABLE = "monitoring/drift_metrics"
QUALITY_TABLE = "monitoring/model_quality"
HEALTH_TABLE = "monitoring/system_health"
