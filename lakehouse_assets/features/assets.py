"""Feature assets: the Feast registry and the online store, downstream of gold (each data
product's training set is built by its component)."""

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    MetadataValue,
    asset,
)

from lakehouse_assets.features.definitions import build_definitions
from lakehouse_assets.features.pipeline import (
    VIEW_TABLES,
    apply_definitions,
    materialize_online,
    online_offline_skew,
)
from lakehouse_assets.metadata import OWNERS
from lakehouse_assets.resources.feast import FeastResource
from lakehouse_assets.resources.lake import LakeResource

GOLD_FEATURES = [AssetKey("customer_daily_features"), AssetKey("product_daily_features")]


@asset(
    group_name="features",
    kinds={"feast"},
    owners=OWNERS,
    deps=GOLD_FEATURES,
    description="Applies the Feast definitions (entities, feature views over the gold Delta "
    "marts, the on-demand view, the feature services) to the registry.",
)
def feature_registry(context: AssetExecutionContext, feast: FeastResource) -> MaterializeResult:
    store, definitions = feast.store(), build_definitions(feast.lake_root)
    catalog = apply_definitions(store, definitions)
    context.log.info(
        f"applied {len(catalog['feature_views'])} feature views, {len(catalog['feature_services'])} services"
    )
    return MaterializeResult(
        metadata={
            "feature_views": MetadataValue.json(catalog["feature_views"]),
            "feature_services": MetadataValue.json(catalog["feature_services"]),
        }
    )


@asset(
    group_name="features",
    kinds={"feast"},
    owners=OWNERS,
    deps=[feature_registry, *GOLD_FEATURES],
    check_specs=[
        AssetCheckSpec(
            "online_matches_offline",
            asset="online_features",
            blocking=True,
            description="For a sample of customers, online values equal the offline values "
            "recomputed at the same time (no training/serving skew), for the daily view and the "
            "streamed view.",
        )
    ],
    description="Materializes the feature views into the online store up to the newest gold "
    "row; the first run backfills the whole history.",
)
def online_features(context: AssetExecutionContext, lake: LakeResource, feast: FeastResource):
    store, definitions = feast.store(), build_definitions(feast.lake_root)
    engine = lake.engine()
    results = materialize_online(store, engine, definitions)
    for r in results:
        context.log.info(
            f"{r.view}: {'backfilled' if r.backfill else 'incremental'} "
            f"{r.start} .. {r.end}, {r.entities} entities"
        )
    yield MaterializeResult(
        metadata={
            "views": MetadataValue.json(
                {
                    r.view: {
                        "start": str(r.start),
                        "end": str(r.end),
                        "backfill": r.backfill,
                        "entities": r.entities,
                    }
                    for r in results
                }
            ),
        }
    )
    views = [definitions.customer_features, definitions.customer_realtime_features]
    skews = [
        online_offline_skew(store, engine, v.name)
        for v in views
        if engine.exists(VIEW_TABLES[v.name])  # the streamed view: once `lakehouse stream` ran
    ]
    yield AssetCheckResult(
        check_name="online_matches_offline",
        passed=not any(s["mismatches"] for s in skews),
        description="; ".join(
            f"{s['view']}: {len(s['mismatches']) or 'no'} feature(s) differ for {s['entities']} entities"
            for s in skews
        ),
        metadata={s["view"]: MetadataValue.json(s) for s in skews},
    )
