"""An open ML lakehouse as one Dagster code location."""
