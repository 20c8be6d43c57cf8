import os

from dagster import DagsterInstance, build_sensor_context

from lakehouse_assets.automation import landing_payments_sensor
from lakehouse_assets.engine import DeltaEngine
from lakehouse_assets.resources.sources import build_resources
from lakehouse_assets.sources.landing import PAYMENTS, ingest_files, list_landing_files


def tick(settings, cursor=None):
    resources = build_resources(settings)
    context = build_sensor_context(
        instance=DagsterInstance.ephemeral(), cursor=cursor,
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
