"""A real PostgreSQL server for tests (see lakehouse_assets/sources/pg_server.py)."""

from lakehouse_assets.sources.pg_server import temporary_server as postgres_server

__all__ = ["postgres_server"]
