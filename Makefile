# The commands README and CI use. Each installs what it needs: uv (bootstrapped with pip into
# .bootstrap/ when it is not on PATH), then the locked environment in .venv/.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = "0" ] || echo sudo)
UV := $(shell command -v uv 2>/dev/null || echo .bootstrap/bin/uv)
export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

SPARK_JARS_DIR ?= $(or $(LAKEHOUSE_SPARK_JARS_DIR),$(HOME)/.cache/lakehouse/spark-jars)

.PHONY: demo demo-cluster demo-postgres test verify ui serve dashboards notebook chromium mlflow-ui monitor-ui bench bench-spark lint check-defs install spark-jars demo-spark postgres-server redis-server

.bootstrap/bin/uv:
	$(PYTHON) -m venv .bootstrap
	.bootstrap/bin/pip install --quiet uv

install: | $(UV)
	$(UV) sync --frozen --extra spark
	@# the dbt manifest the gold assets are built from (dagster-dbt's documented build step)
	$(UV) run --frozen dagster-dbt project prepare-and-package --file lakehouse_assets/resources/dbt.py

# Delta Lake jars for the Spark engine, from Maven Central through the ordinary Maven client.
spark-jars:
	@if ls $(SPARK_JARS_DIR)/delta-spark_*.jar >/dev/null 2>&1; then echo "Delta jars in $(SPARK_JARS_DIR)"; \
	else mvn -q -B -f deploy/spark/pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(SPARK_JARS_DIR) -DincludeGroupIds=io.delta,io.unitycatalog \
	  && echo "Delta jars fetched into $(SPARK_JARS_DIR)"; fi

demo: install  ## simulate the shop and materialize every asset (embedded engine)
	$(UV) run --frozen lakehouse demo

# Debian's PostgreSQL server binaries; the tests start their own server on 127.0.0.1.
postgres-server:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql || true; }
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && echo "PostgreSQL server binaries installed" \
	  || { echo "PostgreSQL server binaries missing: apt-get install postgresql failed"; exit 1; }
	@# wal2json: the logical decoding plugin of the PostgreSQL CDC source (Debian package)
	@v=$$(ls /usr/lib/postgresql | sort -n | tail -1); \
	  ls /usr/lib/postgresql/$$v/lib/wal2json.so >/dev/null 2>&1 || { $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql-$$v-wal2json || true; }; \
	  ls /usr/lib/postgresql/$$v/lib/wal2json.so >/dev/null 2>&1 && echo "wal2json installed" \
	  || { echo "wal2json missing: apt-get install postgresql-$$v-wal2json failed"; exit 1; }

redis-server:
	@command -v redis-server >/dev/null 2>&1 || { $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server || true; }
	@command -v redis-server >/dev/null 2>&1 && echo "Redis server installed" \
	  || { echo "Redis server missing: apt-get install redis-server failed"; exit 1; }

# Debian's Chromium: the dashboards' browser test drives it with Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium || true; }
	@command -v chromium >/dev/null 2>&1 && echo "Chromium installed" \
	  || { echo "Chromium missing: apt-get install chromium failed"; exit 1; }

test: install spark-jars postgres-server redis-server chromium  ## the default test suite (Spark tests run on local[2])
	$(UV) run --frozen pytest

# The reliability proof: the whole suite with 200 randomized crash trials and 300 fuzz examples per
# API operation, then the table of trials, faults, rows compared, rows lost, duplicates and 5xx.
verify: install spark-jars postgres-server redis-server chromium  ## full suite + crash trials + fuzzing, then the report
	rm -rf test-artifacts/verify
	LAKEHOUSE_TEST_VERIFY_TRIALS=$${LAKEHOUSE_TEST_VERIFY_TRIALS:-200} LAKEHOUSE_TEST_VERIFY_FUZZ_EXAMPLES=$${LAKEHOUSE_TEST_VERIFY_FUZZ_EXAMPLES:-300} \
	  $(UV) run --frozen pytest; status=$$?; \
	  $(UV) run --frozen python -m tests.reliability.report && exit $$status

demo-spark: install spark-jars  ## the end-to-end run on the Spark engine (local[*])
	LAKEHOUSE_ENGINE=spark $(UV) run --frozen lakehouse demo

demo-cluster: install spark-jars  ## the end-to-end run on a Spark standalone cluster on 127.0.0.1 (master + 2 workers), stopped after
	$(UV) run --frozen lakehouse spark-cluster --workers 2 -- lakehouse demo

dashboards: install  ## business, data and ML dashboards on 127.0.0.1:8060 over LAKEHOUSE_HOME (after `make demo`)
	$(UV) run --frozen lakehouse dashboards

notebook: install  ## JupyterLab on 127.0.0.1:8888 over LAKEHOUSE_HOME with the example notebooks (after `make demo`)
	$(UV) run --frozen lakehouse notebook

ui: install  ## Dagster UI + daemon on 127.0.0.1:3000 over LAKEHOUSE_HOME
	$(UV) run --frozen lakehouse ui

serve: install  ## the scoring API on 127.0.0.1:8000 over LAKEHOUSE_HOME (after `make demo`)
	$(UV) run --frozen lakehouse serve

mlflow-ui: install  ## the MLflow UI on 127.0.0.1:5000 over LAKEHOUSE_HOME
	$(UV) run --frozen lakehouse mlflow

PG_PORT ?= 5433
demo-postgres: install postgres-server  ## the demo with the shop on a local PostgreSQL, captured from its WAL
	$(UV) run --frozen lakehouse postgres start --port $(PG_PORT)
	LAKEHOUSE_SOURCE_URL=postgresql://postgres@127.0.0.1:$(PG_PORT)/shop $(UV) run --frozen lakehouse demo

monitor-ui: install  ## the Evidently UI (drift and quality snapshots) on 127.0.0.1:8050
	$(UV) run --frozen lakehouse monitor-ui

check-defs: install
	$(UV) run --frozen dagster definitions validate -w workspace.yaml

bench: install  ## bronze ingest (1M, 10M events) and silver apply (1M into 10M rows); minutes
	$(UV) run --frozen python benchmarks/bench_bronze_ingest.py --events 1000000 10000000
	$(UV) run --frozen python benchmarks/bench_silver_apply.py --rows 10000000 --events 1000000

bench-spark: install spark-jars  ## silver apply of 1M events into 10M rows: embedded vs Spark local[2] vs a 2-worker standalone cluster
	$(UV) run --frozen python benchmarks/bench_silver_apply.py --spark "local[2]" --cluster

LINTED := lakehouse_assets tests benchmarks dbt_project/sqlfluff_libs
lint: install  ## ruff (lint and format), mypy on the package, sqlfluff on the dbt models
	$(UV) run --frozen ruff check $(LINTED)
	$(UV) run --frozen ruff format --check $(LINTED)
	$(UV) run --frozen mypy lakehouse_assets
	cd dbt_project && $(abspath $(UV)) run --frozen sqlfluff lint models macros tests
