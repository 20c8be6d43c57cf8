"""The one settings object of the platform: the only module that reads environment variables.

Every value has a default, so a fresh clone runs with no configuration. Override any field with
an environment variable named ``LAKEHOUSE_<FIELD>`` (nested fields use a double underscore, e.g.
``LAKEHOUSE_SIMULATOR__SEED=7``).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from datetime import date
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "LAKEHOUSE_"
# Variables of the test harness (crash trials, fuzzing, artifacts): not settings.
TEST_ENV_PREFIX = "LAKEHOUSE_TEST_"
# The dbt project of the gold marts (shipped beside the package).
DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"


class FrozenModel(BaseModel):
    """Settings groups are read once and never changed: ``model_copy(update=...)`` derives."""

    model_config = ConfigDict(frozen=True)


class SimulatorSettings(FrozenModel):
    """Knobs of the shop simulator. Defaults give a small, realistic quarter of activity."""

    seed: int = 42
    start_date: date = date(2026, 1, 1)
    days: int = Field(default=60, ge=1, description="days of activity per `simulate` call")
    initial_customers: int = Field(default=400, ge=1)
    initial_products: int = Field(default=120, ge=1)
    orders_per_day: float = Field(default=60.0, gt=0, description="mean orders on an ordinary day")
    scale: float = Field(default=1.0, gt=0, description="multiplies customers, products and orders per day")
    # Drift knobs.
    seasonality_amplitude: float = Field(
        default=0.25, ge=0, lt=1, description="weekly/yearly swing of order volume (0 = flat)"
    )
    promotion_start_day: int | None = Field(default=30, description="day index the promotion starts")
    promotion_days: int = Field(default=7, ge=0)
    promotion_discount: float = Field(default=0.2, ge=0, lt=1)
    promotion_uplift: float = Field(default=0.6, ge=0, description="extra order volume share")
    new_category_day: int | None = Field(
        default=40, description="day index a new product category ('smart_home') launches"
    )
    customer_mix_shift_day: int | None = Field(
        default=45, description="day index new sign-ups shift towards the 'bargain' segment"
    )
    customer_mix_bargain_share: float = Field(default=0.6, ge=0, le=1)
    # Operational events.
    address_change_rate: float = Field(default=0.004, ge=0, le=1, description="per customer-day")
    cancellation_rate: float = Field(default=0.04, ge=0, le=1, description="share of placed orders")
    gdpr_erasures_per_day: float = Field(default=0.1, ge=0)
    price_change_rate: float = Field(default=0.01, ge=0, le=1, description="per product-day")
    # Landing-zone event files (payments).
    landing_formats: tuple[str, ...] = ("csv", "jsonl", "parquet")
    malformed_row_share: float = Field(default=0.01, ge=0, le=1)
    malformed_file_share: float = Field(
        default=0.05, ge=0, le=1, description="share of files truncated mid-write"
    )


class ServingSettings(FrozenModel):
    """The scoring service (`lakehouse serve`)."""

    host: str = "127.0.0.1"
    port: int = 8000
    token: SecretStr | None = Field(
        default=None,
        description="bearer token for scoring calls; required when host is not a loopback address",
    )
    products: list[str] = Field(
        default_factory=list,
        description="the online products this service serves (default: every product declaring "
        "serving.online); each at /v1/models/<product>/predict",
    )
    default_product: str = Field(
        default="return_risk",
        description="the product /v1/predict, /v1/rollout and /v1/reload serve (when it is served "
        "online; else the first online product)",
    )
    max_batch: int = Field(default=100, ge=1, description="orders per batch call")
    max_items: int = Field(default=50, ge=1, description="order lines per order")
    max_body_bytes: int = Field(default=1_048_576, ge=1024, description="largest request body (413 above)")
    reload_seconds: float = Field(
        default=10.0, gt=0, description="how often the champion alias is checked for a move"
    )
    batch_window_ms: float = Field(
        default=2.0,
        ge=0,
        description="requests arriving within this window are scored in one model call",
    )
    log_flush_seconds: float = Field(
        default=1.0, gt=0, description="inference log: the longest a prediction waits for its commit"
    )
    rollout: Literal["champion", "shadow", "canary"] = Field(
        default="champion",
        description="how the registry's challenger takes part: not at all; shadow (scores every "
        "request, only the champion answers); canary (answers canary_share of customers). "
        "Changed at run time with PUT /v1/rollout (`lakehouse rollout`)",
    )
    canary_share: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="share of customers the challenger answers in canary mode; sticky per customer",
    )

    @field_validator("token")
    @classmethod
    def _token_not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        return _non_empty_secret(token, "LAKEHOUSE_SERVING__TOKEN")


def _non_empty_secret(value: SecretStr | None, name: str) -> SecretStr | None:
    """A secret that is set must hold something: an empty token would be refused by nothing
    (or accept an empty bearer); unset it to go without one."""
    if value is not None and not value.get_secret_value().strip():
        raise ValueError(f"{name} is set but empty: set a long random token, or unset it")
    return value


class StreamSettings(FrozenModel):
    """The continuous pipeline (`lakehouse stream`)."""

    interval_seconds: float = Field(default=1.0, gt=0, description="how often a micro-batch starts")
    max_batch_rows: int = Field(
        default=10_000, ge=1, description="changes per table and commit: a burst is taken in chunks this size"
    )
    lag_objective_seconds: float = Field(
        default=5.0,
        gt=0,
        description="source commit -> silver and -> online features within this, at the 99th percentile",
    )
    compact_every_batches: int = Field(
        default=600, ge=1, description="OPTIMIZE the streamed tables after this many micro-batches"
    )
    features: bool = Field(
        default=True, description="compute the streamed feature view and push it to the online store"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=8075, ge=0, description="Prometheus /metrics of the stream (0: off)")


class MonitoringSettings(FrozenModel):
    """Drift, model quality, system health and alerts."""

    min_window_rows: int = Field(
        default=200,
        ge=10,
        description="a drift window is the traffic since the last check, extended back to at "
        "least this many rows (fewer in the whole log: the check is skipped)",
    )
    sample_rows: int = Field(
        default=30_000, ge=1_000, description="rows per side Evidently compares (uniform sample)"
    )
    gold_window_days: int = Field(
        default=7, ge=1, description="newest gold orders compared with the reference"
    )
    min_labelled_rows: int = Field(
        default=50, ge=2, description="labelled predictions needed to judge quality"
    )
    latency_p99_ms: float = Field(default=50.0, gt=0, description="serving p99 objective")
    max_error_rate: float = Field(default=0.01, ge=0, le=1, description="serving 5xx share objective")
    serving_url: str = Field(
        default="http://127.0.0.1:8000", description="where system_health reads the service's /metrics"
    )
    ui_port: int = Field(default=8050, description="`lakehouse monitor-ui` (Evidently UI)")
    alert_webhook_url: SecretStr | None = Field(
        default=None, description='Slack-compatible webhook for alerts (JSON {"text": ...})'
    )


class LakehouseSettings(BaseSettings):
    """Where local state lives, which engine runs, and how the simulator behaves."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="ignore", frozen=True
    )

    home: Path = Field(default=Path("~/.lakehouse"), description="one folder for all local state")
    environment: Literal["local", "production"] = "local"
    engine: Literal["embedded", "spark"] = "embedded"
    lake_uri: str | None = Field(
        default=None, description="root of the Delta tables; defaults to <home>/lake"
    )
    source_db_path: Path | None = Field(
        default=None, description="SQLite source database; defaults to <home>/source/shop.sqlite"
    )
    source_url: SecretStr | None = Field(
        default=None,
        description="postgresql://... : the shop runs on PostgreSQL (the simulator's changes are "
        "written there) and bronze captures from its write-ahead log (wal_level=logical, "
        "wal2json); unset: the SQLite source",
    )
    postgres_port: int = Field(default=5433, description="`lakehouse postgres start`: local server")
    cdc_max_lag_bytes: int = Field(
        default=64 * 2**20, ge=0, description="PostgreSQL CDC: WAL a slot may hold back"
    )
    cdc_max_lag_seconds: float = Field(
        default=900.0, ge=0, description="PostgreSQL CDC: age of the oldest unread commit"
    )
    landing_dir: Path | None = Field(default=None, description="defaults to <home>/landing")
    cdc_chunk_rows: int = Field(
        default=250_000,
        ge=1,
        description="change events per bronze commit; the next chunk is read while one is written",
    )
    silver_max_events_per_apply: int = Field(
        default=10_000_000,
        ge=0,
        description="apply-changes takes a larger bronze backlog range by range (bounded memory); "
        "0: all at once",
    )
    training_set_max_rows: int = Field(
        default=2_000_000,
        ge=0,
        description="the embedded engine joins a larger training set's features this many labelled "
        "rows at a time, written in one commit (bounded memory); 0: all at once",
    )
    time_travel_retention_hours: int = Field(
        default=168, ge=0, description="VACUUM keeps the files of versions younger than this"
    )
    spark_master: str = Field(
        default="local[*]",
        description="local[N], spark://host:port, k8s://... or yarn (Spark Connect is not supported)",
    )
    spark_jars_dir: Path = Field(
        default=Path("~/.cache/lakehouse/spark-jars"),
        description="Delta Lake jars fetched by `make spark-jars` (copy it for air-gapped use)",
    )
    spark_driver_memory: str = "4g"
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="more Spark session settings, laid over the platform's (JSON), e.g. "
        '{"spark.cores.max": "2"} so the engine and dbt-spark share a standalone cluster',
    )
    feast_registry_url: str | None = Field(
        default=None, description="production: SQL registry URL (postgresql://...)"
    )
    feast_redis_url: str | None = Field(
        default=None, description="production: Redis online store, host:port[,password=...]"
    )
    mlflow_tracking_uri: str | None = Field(
        default=None,
        description="MLflow tracking: defaults to SQLite under <home>/mlflow (no server); "
        "production: http(s)://mlflow-server",
    )
    mlflow_registry_uri: str | None = Field(
        default=None, description="MLflow model registry; defaults to the tracking URI"
    )
    ui_host: str = "127.0.0.1"
    ui_port: int = 3000
    mlflow_ui_port: int = 5000
    dashboards_port: int = Field(default=8060, description="`lakehouse dashboards` (Dash)")
    notebook_port: int = Field(default=8888, description="`lakehouse notebook` (JupyterLab)")
    notebook_token: SecretStr | None = Field(
        default=None,
        description="JupyterLab login token; unset: a new one each start (printed). "
        "Required to bind a non-loopback address",
    )
    serving: ServingSettings = ServingSettings()
    simulator: SimulatorSettings = SimulatorSettings()
    stream: StreamSettings = StreamSettings()
    products_dirs: tuple[Path, ...] = Field(
        default=(),
        description="folders of your own data products (<folder>/<name>/defs.yaml), beside the "
        "built-in ones in lakehouse_assets/products",
    )
    product_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description='per-environment changes to declarations, JSON: {"<product>": {"gate": '
        '{"min_online_requests": 500}}}',
    )
    monitoring: MonitoringSettings = MonitoringSettings()

    @cached_property
    def home_dir(self) -> Path:
        return self.home.expanduser().resolve()

    @property
    def lake_root(self) -> str:
        return self.lake_uri or str(self.home_dir / "lake")

    @property
    def source_db(self) -> Path:
        return (self.source_db_path or self.home_dir / "source" / "shop.sqlite").expanduser()

    @property
    def landing(self) -> Path:
        return (self.landing_dir or self.home_dir / "landing").expanduser()

    @property
    def gold_dir(self) -> Path:
        """dbt's DuckDB file and intermediate files (the gold Delta tables live in the lake)."""
        return self.home_dir / "gold"

    @property
    def feast_dir(self) -> Path:
        """Feast's registry and (local) online store."""
        return self.home_dir / "feast"

    @property
    def mlflow_dir(self) -> Path:
        """The local MLflow backend (SQLite) and artifact folder."""
        return self.home_dir / "mlflow"

    @property
    def tracking_uri(self) -> str:
        return self.mlflow_tracking_uri or f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def dagster_home(self) -> Path:
        return self.home_dir / "dagster"

    def spark_config(self) -> dict[str, str]:
        """Spark session settings for the Delta engine (dagster-pyspark's resource takes them)."""
        jars_dir = self.spark_jars_dir.expanduser()
        jars = sorted(str(p) for p in jars_dir.glob("*.jar")) if jars_dir.is_dir() else []
        config = {
            "spark.app.name": "lakehouse",
            "spark.sql.warehouse.dir": str(self.home_dir / "spark-warehouse"),
            "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
            "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
            # Same semantics as the embedded engine: naive timestamps, UTC, no deletion vectors.
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.timestampType": "TIMESTAMP_NTZ",
            "spark.databricks.delta.properties.defaults.enableDeletionVectors": "false",
            "spark.databricks.delta.retentionDurationCheck.enabled": "false",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.sql.shuffle.partitions": "4",
            # Small Delta logs need no 50-way state reconstruction (the default).
            "spark.databricks.delta.snapshotPartitions": "2",
            # VACUUM lists files with this many tasks (default 10000, minutes on one machine).
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": "8",
            "spark.driver.memory": self.spark_driver_memory,
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "false",
        }
        config["spark.master"] = self.spark_master
        config["spark.jars"] = ",".join(jars)
        return {**config, **self.spark_conf}

    @field_validator("spark_master")
    @classmethod
    def _no_spark_connect(cls, master: str) -> str:
        if master.startswith("sc://"):
            raise ValueError(
                f"LAKEHOUSE_SPARK_MASTER={master!r}: Spark Connect is not supported (the engine "
                "uses delta-spark's DeltaTable on a classic session, which needs the delta-connect "
                "server plugin over Connect); use local[N], spark://host:port, k8s://... or yarn"
            )
        return master

    @field_validator("notebook_token")
    @classmethod
    def _notebook_token_not_empty(cls, token: SecretStr | None) -> SecretStr | None:
        return _non_empty_secret(token, "LAKEHOUSE_NOTEBOOK_TOKEN")

    @model_validator(mode="after")
    def _no_unknown_variables(self) -> LakehouseSettings:
        unknown = unknown_variables(os.environ)
        if unknown:
            raise ValueError(
                "unknown setting(s) "
                + "; ".join(unknown)
                + " (every LAKEHOUSE_* variable must name a setting: see README)"
            )
        return self


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """The ``LAKEHOUSE_*`` variables that name no setting, each with the closest names (a typo
    would otherwise be ignored and the default used without a word)."""
    top = LakehouseSettings.model_fields
    problems = []
    for key in sorted(environ):
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX) or upper.startswith(TEST_ENV_PREFIX):
            continue
        field, _, nested = upper.removeprefix(ENV_PREFIX).lower().partition("__")
        if field in top and not nested:
            continue
        group = top[field].annotation if field in top else None
        if nested and isinstance(group, type) and issubclass(group, BaseModel):
            if nested in group.model_fields:
                continue
            names = [f"{ENV_PREFIX}{field}__{n}".upper() for n in group.model_fields]
        else:
            names = [f"{ENV_PREFIX}{n}".upper() for n in top]
        close = difflib.get_close_matches(upper, names, n=2, cutoff=0.6)
        problems.append(f"{key}" + (f" (did you mean {' or '.join(close)}?)" if close else ""))
    return problems


def get_settings() -> LakehouseSettings:
    """Read the settings from the environment (a fresh read each call, so tests can override)."""
    return LakehouseSettings()
