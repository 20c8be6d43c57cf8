# The commands README and CI use. Each installs what it needs: uv (bootstrapped with pip into
# .bootstrap/ when it is not on PATH), then the locked environment in .venv/.
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo .bootstrap/bin/uv)
export DAGSTER_DISABLE_TELEMETRY := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1

.PHONY: demo test ui bench lint check-defs install

.bootstrap/bin/uv:
	$(PYTHON) -m venv .bootstrap
	.bootstrap/bin/pip install --quiet uv

install: | $(UV)
	$(UV) sync --frozen

demo: install  ## simulate the shop and materialize every asset (embedded engine)
	$(UV) run --frozen lakehouse demo

test: install  ## the default test suite
	$(UV) run --frozen pytest

ui: install  ## Dagster UI + daemon on 127.0.0.1:3000 over LAKEHOUSE_HOME
	$(UV) run --frozen lakehouse ui

check-defs: install
	$(UV) run --frozen dagster definitions validate -w workspace.yaml

bench: install  ## bronze ingest (1M, 10M events) and silver apply (1M into 10M rows); minutes
	$(UV) run --frozen python benchmarks/bench_bronze_ingest.py --events 1000000 10000000
	$(UV) run --frozen python benchmarks/bench_silver_apply.py --rows 10000000 --events 1000000

lint: install
	$(UV) run --frozen ruff check lakehouse_assets tests benchmarks
