from click.testing import CliRunner

from lakehouse_assets.cli import main


def test_simulate_then_demo_end_to_end(settings, monkeypatch):
    monkeypatch.setenv("LAKEHOUSE_SIMULATOR__INITIAL_CUSTOMERS", "50")
    monkeypatch.setenv("LAKEHOUSE_SIMULATOR__ORDERS_PER_DAY", "15")
    runner = CliRunner()
    simulated = runner.invoke(main, ["simulate", "--days", "3", "--seed", "3"])
    assert simulated.exit_code == 0, simulated.output
    assert "simulated 3 day(s)" in simulated.output
    assert settings.source_db.exists()

    demo = runner.invoke(main, ["demo", "--days", "4"])
    assert demo.exit_code == 0, demo.output
    assert "succeeded" in demo.output and "FAILED" not in demo.output
    assert (settings.home_dir / "lake" / "bronze" / "orders" / "_delta_log").is_dir()
    # The run is recorded in the Dagster instance under the same home folder (seen by `ui`).
    assert (settings.dagster_home / "history").is_dir()
    assert (settings.home_dir / "lake" / "features" / "training_set" / "_delta_log").is_dir()

    listing = runner.invoke(main, ["features"])
    assert listing.exit_code == 0, listing.output
    assert "customer_daily_features" in listing.output and "return_risk_v1" in listing.output
