"""Feature assets: the Feast registry, the online store and the training set, downstream of gold."""

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
    LABEL,
    apply_definitions,
    build_training_set,
    materialize_online,
    online_offline_skew,
)
from lakehouse_assets.metadata import OWNERS, table_metadata
from lakehouse_assets.resources.feast import FeastResource
from lakehouse_assets.resources.lake import LakeResource
from lakehouse_assets.tables import TRAINING_SET_TABLE

GOLD_FEATURES = [AssetKey("customer_daily_features"), AssetKey("product_daily_features")]


@asset(
    group_name="features",
    kinds={"feast"},
    owners=OWNERS,
    deps=GOLD_FEATURES,
    description="Applies the Feast definitions (entities, feature views over the gold Delta "
    "marts, the on-demand view, the return_risk services) to the registry.",
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
            "recomputed at the same time (no training/serving skew).",
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
    skew = online_offline_skew(store, engine, definitions)
    yield AssetCheckResult(
        check_name="online_matches_offline",
        passed=not skew["mismatches"],
        metadata={k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in skew.items()},
    )


@asset(
    group_name="features",
    kinds={"feast", "delta"},
    owners=OWNERS,
    deps=[feature_registry, AssetKey("fct_orders"), AssetKey("silver_order_items"), *GOLD_FEATURES],
    metadata={"table": TRAINING_SET_TABLE},
    description="Point-in-time-correct features (return_risk_v2: customer and request-time "
    "features per order, product features aggregated over the basket) for every order whose "
    "label is known, joined as of the order time, with the label. The metadata records the Delta "
    "version of every table read, so the set can be rebuilt exactly by time travel.",
)
def training_set(
    context: AssetExecutionContext, lake: LakeResource, feast: FeastResource
) -> MaterializeResult:
    store, definitions = feast.store(), build_definitions(feast.lake_root)
    engine = lake.engine()
    frame, versions = build_training_set(store, engine, definitions)
    engine.overwrite(TRAINING_SET_TABLE, frame, commit_metadata={"source_versions": versions})
    context.log.info(f"training set: {frame.height:,} labelled orders")
    return MaterializeResult(
        metadata={
            **table_metadata(engine, TRAINING_SET_TABLE),
            "source_delta_versions": MetadataValue.json(versions),
            "label_rate": float(frame[LABEL].mean() or 0.0),  # type: ignore[arg-type]
        }
    )
