"""The example notebooks: stored without outputs, every one executes on the session demo (a small
simulator run), the report notebook is a Dagster asset, and `lakehouse notebook` serves
JupyterLab with the examples on 127.0.0.1 behind a token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import nbformat
import pytest
from click.testing import CliRunner
from dagster import AssetKey, DagsterEventType, DagsterInstance
from deltalake import DeltaTable
from mlflow import MlflowClient

from lakehouse_assets.cli import main, materialize_all
from lakehouse_assets.notebooks.jupyter import (
    NotebookError,
    cells_with_outputs,
    examples,
    run_notebook,
    strip_outputs,
)
from lakehouse_assets.settings import LakehouseSettings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "notebooks"


def test_examples_are_stored_without_outputs_on_the_project_kernel():
    names = [p.name for p in examples()]
    assert names == [
        "01_explore_the_lake.ipynb",
        "02_new_feature_point_in_time.ipynb",
        "03_train_a_challenger.ipynb",
        "04_return_drivers_report.ipynb",
    ]
    for path in examples():
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        assert cells_with_outputs(notebook) == [], (
            f"{path.name} has outputs: run `lakehouse notebook strip` before committing"
        )
        assert notebook.metadata.kernelspec.name == "python3"


def test_strip_removes_outputs_and_counts(tmp_path):
    path = tmp_path / "n.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    notebook.cells[0].outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)
    ]
    notebook.cells[0].execution_count = 1
    nbformat.write(notebook, path)
    assert strip_outputs(path) is True
    assert cells_with_outputs(nbformat.read(path, as_version=4)) == []
    assert strip_outputs(path) is False


def test_a_failing_cell_is_named_and_the_executed_notebook_kept(tmp_path):
    path = tmp_path / "broken.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("x = 1"),
                nbformat.v4.new_code_cell("raise ValueError('bad input: column amount')"),
                nbformat.v4.new_code_cell("never = True"),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        path,
    )
    output = tmp_path / "out" / "broken.ipynb"
    with pytest.raises(NotebookError, match=r"broken.ipynb: cell 2 failed: ValueError: bad input"):
        run_notebook(path, env=dict(os.environ), output=output, timeout=60)
    executed = nbformat.read(output, as_version=4)
    assert executed.cells[1].outputs[0].output_type == "error"
    assert executed.cells[2].get("execution_count") is None  # stopped at the failure


@pytest.mark.integration
@pytest.mark.parametrize("name", [p.name for p in examples()])
def test_every_example_notebook_runs_on_the_demo(demo_home, name):
    output = ARTIFACTS / name
    run = run_notebook(
        next(p for p in examples() if p.name == name),
        env={**os.environ, **demo_home.env},
        output=output,
        timeout=600,
    )
    executed = nbformat.read(output, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert run.cells == len(code) and all(c.execution_count for c in code)  # every cell ran
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.output_type == "error"
    ]
    assert errors == []
    settings = LakehouseSettings(home=demo_home.home)
    if name.startswith("03"):  # the experiment was registered as the challenger
        client = MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)
        challenger = client.get_model_version_by_alias("return_risk", "challenger")
        assert challenger.tags["source"] == "notebook"
        assert challenger.tags["registration"] == "complete"
        run_info = client.get_run(challenger.run_id)
        assert run_info.data.tags["source"] == "notebook"
        assert {i.dataset.name.split(":")[-1] for i in run_info.inputs.dataset_inputs} == {
            "training",
            "validation",
        }
    if name.startswith("04"):  # the report table: every labelled order once per dimension
        report = DeltaTable(f"{settings.lake_root}/reports/return_drivers").to_pandas()
        per_dimension = report.groupby("dimension")["orders"].sum()
        assert set(per_dimension.index) == {"main_category", "discount_band", "basket", "segment"}
        assert per_dimension.nunique() == 1 and per_dimension.iloc[0] > 0


@pytest.mark.integration
def test_the_report_notebook_is_a_dagster_asset(demo_home, monkeypatch):
    """The demo materialized it with every other asset; run alone again it is idempotent (the
    same report, a new table version) and Dagster records the executed notebook and what the
    notebook observed."""
    for key, value in demo_home.env.items():
        monkeypatch.setenv(key, value)
    settings = LakehouseSettings(home=demo_home.home)
    table = f"{settings.lake_root}/reports/return_drivers"
    before = DeltaTable(table)
    assert materialize_all(settings, groups=("notebooks",))
    after = DeltaTable(table)
    assert after.version() > before.version()
    columns = ["dimension", "value", "orders", "returns"]
    assert (
        after.to_pandas()[columns]
        .sort_values(columns[:2])
        .reset_index(drop=True)
        .equals(before.to_pandas()[columns].sort_values(columns[:2]).reset_index(drop=True))
    )

    instance = DagsterInstance.from_config(str(settings.dagster_home))
    materialization = instance.get_latest_materialization_event(AssetKey("return_drivers_report"))
    assert materialization is not None
    executed_path = materialization.asset_materialization.metadata["Executed notebook"].value
    executed = nbformat.read(executed_path, as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert ["injected-parameters"] in tags and ["parameters"] not in tags  # the run's context
    assert cells_with_outputs(executed)
    observations = instance.all_logs(materialization.run_id, of_type=DagsterEventType.ASSET_OBSERVATION)
    metadata = observations[-1].asset_observation.metadata
    assert metadata["delta_version"].value == after.version()
    assert metadata["groups"].value == after.to_pandas().shape[0]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.integration
def test_lakehouse_notebook_serves_jupyterlab_with_the_examples(demo_home, tmp_path):
    port = _free_port()
    env = {
        **os.environ,
        **demo_home.env,
        "LAKEHOUSE_NOTEBOOK_TOKEN": "test-token-0123456789",
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "lakehouse_assets.cli", "notebook", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    base, auth = f"http://127.0.0.1:{port}", {"Authorization": "token test-token-0123456789"}
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                listing = httpx.get(f"{base}/api/contents/notebooks/examples", headers=auth)
                if listing.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, process.stdout.read()
            time.sleep(0.5)
        assert sorted(c["name"] for c in listing.json()["content"]) == [p.name for p in examples()]
        assert httpx.get(f"{base}/api/contents/notebooks/examples").status_code == 403
        commands = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
        assert "jupyterlab" in commands and "test-token-0123456789" not in commands
        assert httpx.get(f"{base}/lab", headers=auth).status_code == 200
        kernel = httpx.post(f"{base}/api/kernels", json={"name": "python3"}, headers=auth)
        assert kernel.status_code == 201
        httpx.delete(f"{base}/api/kernels/{kernel.json()['id']}", headers=auth)
    finally:
        os.killpg(process.pid, 15)
        process.wait(timeout=30)


def test_jupyterlab_is_not_exposed_without_a_token(tmp_path):
    result = CliRunner().invoke(
        main, ["notebook", "--host", "0.0.0.0"], env={"LAKEHOUSE_HOME": str(tmp_path)}
    )
    assert result.exit_code != 0
    assert "without LAKEHOUSE_NOTEBOOK_TOKEN" in result.output


def test_notebook_run_and_strip_commands(tmp_path):
    path = tmp_path / "check.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(
            cells=[
                nbformat.v4.new_code_cell("import os\nprint(os.environ['LAKEHOUSE_HOME'])"),
            ],
            metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        ),
        path,
    )
    env = {"LAKEHOUSE_HOME": str(tmp_path / "home")}
    result = CliRunner().invoke(
        main, ["notebook", "run", str(path), "--output", str(tmp_path / "executed")], env=env
    )
    assert result.exit_code == 0, result.output
    assert "[1/1] check.ipynb: 1 cells" in result.output
    executed = nbformat.read(tmp_path / "executed" / "check.ipynb", as_version=4)
    assert executed.cells[0].outputs[0].text.strip() == str((tmp_path / "home").resolve())
    assert cells_with_outputs(nbformat.read(path, as_version=4)) == []  # the source is untouched

    stripped = CliRunner().invoke(main, ["notebook", "strip", str(tmp_path / "executed" / "check.ipynb")])
    assert "stripped" in stripped.output
    assert cells_with_outputs(nbformat.read(tmp_path / "executed" / "check.ipynb", as_version=4)) == []

    path.write_text(path.read_text().replace("print(os.environ", "print(os.environ['NOPE'], os.environ"))
    failed = CliRunner().invoke(
        main, ["notebook", "run", str(path), "--output", str(tmp_path / "x")], env=env
    )
    assert failed.exit_code == 1
    assert "check.ipynb: cell 1 failed: KeyError" in failed.output
