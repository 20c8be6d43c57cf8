"""Data products: the models the platform trains, serves and monitors, each declared once in
`products/<name>/defs.yaml` (a Dagster component; schema in products/spec.py)."""
