import pytest

from lakehouse_assets.resources.connections import feast_repo_config as repo_config


def test_local_environment_uses_sqlite_registry_and_online_store_under_the_home(tmp_path):
    config = repo_config(tmp_path / "feast")
    assert config.registry.path == f"sqlite:///{tmp_path / 'feast'}/registry.db"
    assert config.online_store.type == "sqlite"
    assert config.online_store.path == f"{tmp_path / 'feast'}/online_store.db"
    assert config.offline_store.type.endswith("DeltaOfflineStore")


def test_production_environment_uses_sql_registry_and_redis(tmp_path):
    config = repo_config(
        tmp_path, "production", "postgresql://feast@db:5432/feast", "redis:6379,password=secret"
    )
    # Feast names its PostgreSQL driver (psycopg 3) in the URL itself.
    assert config.registry.path == "postgresql+psycopg://feast@db:5432/feast"
    assert config.online_store.type == "redis"
    assert config.online_store.connection_string == "redis:6379,password=secret"
    with pytest.raises(ValueError, match="LAKEHOUSE_FEAST_REDIS_URL"):
        repo_config(tmp_path, "production", "postgresql://x", None)
