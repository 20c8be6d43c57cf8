"""The production environment against real servers: the SQL registry in PostgreSQL and the Redis
online store, chosen by settings only (started on 127.0.0.1 by the test)."""

import pytest

from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.features.online import OnlineFeatureLookup
from lakehouse_assets.features.pipeline import describe, materialize_online, online_offline_skew
from lakehouse_assets.features.store import feature_store
from lakehouse_assets.runtime import ensure_dirs
from lakehouse_assets.settings import LakehouseSettings
from tests.features.gold_fixture import write_gold_features
from tests.postgres_server import postgres_server
from tests.products import product
from tests.redis_server import redis_server

pytestmark = pytest.mark.integration


def test_production_registry_in_postgres_and_online_store_in_redis(tmp_path):
    with postgres_server() as registry_url, redis_server() as redis_url:
        settings = LakehouseSettings(
            home=tmp_path,
            environment="production",
            feast_registry_url=registry_url,
            feast_redis_url=redis_url,
        )
        ensure_dirs(settings)
        store, definitions = feature_store(settings)
        assert store.config.online_store.type == "redis"
        write_gold_features(settings.lake_root, definitions)
        store.apply(definitions.all())
        engine = DeltaEngine(settings.lake_root)
        runs = materialize_online(store, engine, definitions)
        assert [(r.view, r.backfill, r.entities) for r in runs] == [
            ("customer_daily_features", True, 30),
            ("product_daily_features", True, 30),
        ]

        # A second process sees the same registry (PostgreSQL) and online values (Redis).
        reopened, _ = feature_store(settings)
        assert set(describe(reopened)["feature_views"]) == {
            "customer_daily_features",
            "product_daily_features",
            "customer_realtime_features",
            "order_request_features",
        }
        got = reopened.get_online_features(
            features=["customer_daily_features:orders_90d", "product_daily_features:price_band"],
            entity_rows=[{"customer_id": 7, "product_id": 8}],
        ).to_dict()
        assert got["orders_90d"] == [7 * 10 + 3] and got["price_band"] == ["s2"]
        served = OnlineFeatureLookup(reopened, list(product().row_features)).lookup(
            [{"customer_id": 7, "amount": 50.0, "discount": 0.2}]
        )[0]
        assert served["amount_vs_avg_basket"] == pytest.approx(50.0 / ((7 + 3 / 4) / (7 * 10 + 3)))
        assert online_offline_skew(reopened, engine, definitions.customer_features.name)["mismatches"] == {}
