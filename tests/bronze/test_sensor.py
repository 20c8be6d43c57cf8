import os

from dagster import DagsterInstance, build_sensor_context, materialize

from lakehouse_assets.automation import landing_payments_sensor
from lakehouse_assets.bronze.assets import ingest_payments_files
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.sources.landing import PAYMENTS, ingest_files, list_landing_files, scan_landing


def tick(settings, cursor=None):
    resources = build_resources(settings)
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(),
        cursor=cursor,
        resources={"landing_zone": resources["landing_zone"], "lake": resources["lake"]},
    )
    result = landing_payments_sensor(context)
    return result.run_requests or [], result.cursor


def test_one_run_request_per_new_file_and_none_for_seen_files(simulated, settings):
    files = list_landing_files(settings.landing, PAYMENTS)
    requests, cursor = tick(settings)
    assert len(requests) == len(files)
    assert len({r.run_key for r in requests}) == len(files)
    config = requests[0].run_config["ops"]["ingest_payments_files"]["config"]
    assert config == {"files": [files[0].relpath]}

    assert tick(settings, cursor)[0] == []  # nothing new

    simulated.run(1)  # drops one more file
    requests, cursor = tick(settings, cursor)
    assert [r.run_config["ops"]["ingest_payments_files"]["config"]["files"] for r in requests] == [
        [list_landing_files(settings.landing, PAYMENTS)[-1].relpath]
    ]

    # A replaced file (new size/mtime) is picked up again.
    target = files[0].path
    target.write_bytes(target.read_bytes() + b"")
    os.utime(target, ns=(files[0].mtime_ns + 10**9, files[0].mtime_ns + 10**9))
    requests, _ = tick(settings, cursor)
    assert len(requests) == 1


def test_files_already_in_bronze_are_recorded_without_a_run(simulated, settings):
    engine = DeltaEngine(settings.lake_root)
    files = list_landing_files(settings.landing, PAYMENTS)
    ingest_files(engine, settings.landing, PAYMENTS, [f.path for f in files], batch_id="bulk")
    requests, cursor = tick(settings)
    assert requests == []
    assert all(f.relpath in cursor for f in files)


def test_links_and_special_files_are_skipped_with_a_reason_and_other_files_flow(
    simulated, settings, tmp_path
):
    folder = PAYMENTS.folder(settings.landing)
    outside = tmp_path / "outside.csv"
    outside.write_text("payment_id,order_id,amount,paid_at\n1,1,9.5,2026-01-01 10:00:00\n")
    (folder / "escape.csv").symlink_to(outside)  # points out of the landing folder
    (folder / "etc").symlink_to("/etc")  # a linked folder: never entered
    os.mkfifo(folder / "pipe.csv")  # reading it would block
    regular = list_landing_files(settings.landing, PAYMENTS)
    assert regular and all(f.path.is_file() and not f.path.is_symlink() for f in regular)

    requests, cursor = tick(settings)  # failed on the link before (path outside the folder)
    requested = [r.run_config["ops"]["ingest_payments_files"]["config"]["files"][0] for r in requests]
    assert requested == [f.relpath for f in regular]
    _, skipped = scan_landing(settings.landing, PAYMENTS)
    assert {s.relpath: s.reason.split(" (")[0].split(":")[0] for s in skipped} == {
        "payments/escape.csv": "a symbolic link",
        "payments/etc": "a symbolic link",
        "payments/pipe.csv": "not a regular file",
    }

    result = materialize(
        [ingest_payments_files], resources=build_resources(settings), instance=DagsterInstance.ephemeral()
    )  # every file, as a bulk run does
    assert result.success
    metadata = result.asset_materializations_for_node("ingest_payments_files")[0].metadata
    assert set(metadata["entries_skipped"].value) == {s.relpath for s in skipped}
    assert metadata["files_ingested"].value == len(regular)
    engine = DeltaEngine(settings.lake_root)
    assert 9.5 not in engine.read(PAYMENTS.table)["amount"].to_list()  # the outside file
