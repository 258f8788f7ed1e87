"""The `hft` command: help, happy paths, and one-line errors for user mistakes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.cli import main
from hft.data.lake import BarLake, Quarantine

HFT = str(Path(sys.executable).with_name("hft"))


def run(*args, env=None):
    return subprocess.run([HFT, *args], capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)


def test_cli_help_lists_subcommands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("ingest", "features", "lake", "demo"):
        assert cmd in proc.stdout


def test_cli_ingest_synthetic_stores_bars_and_logs_ecs_json(tmp_path):
    proc = run("ingest", "--source", "synthetic", "--tickers", "AAA,BBB", "--start", "2024-03-07",
               "--end", "2024-03-08", "--lake", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "fetched 1560 bars: 1560 new" in proc.stdout
    assert len(BarLake(str(tmp_path)).read("1m")) == 1560
    ecs = [line for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any('"bars_new":1560' in line.replace(" ", "") and '"ecs.version"' in line for line in ecs)


def test_cli_ingest_rerun_reports_nothing_new(tmp_path):
    args = ("ingest", "--tickers", "AAA", "--start", "2024-03-07", "--end", "2024-03-07", "--lake", str(tmp_path))
    assert run(*args).returncode == 0
    proc = run(*args)
    assert proc.returncode == 0 and "0 new, 0 updated, 390 unchanged" in proc.stdout


def test_cli_ingest_yfinance_file_with_fractional_volumes_reaches_the_lake(tmp_path, bars_factory):
    """Yahoo's 1m volumes are fractional since about February 2026 (``88305.015766``): the whole file is stored."""
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07")
    volume = bars["volume"].to_numpy() + np.where(np.arange(len(bars)) % 2 == 0, 0.015766, 0.0)  # mixed
    local = pd.to_datetime(bars["ts"], utc=True).dt.tz_convert("America/New_York")
    csv = tmp_path / "AAA.csv"
    pd.DataFrame({"Datetime": local, "Open": bars["open"], "High": bars["high"], "Low": bars["low"],
                  "Close": bars["close"], "Volume": volume, "Dividends": 0.0, "Stock Splits": 0.0}).to_csv(csv, index=False)
    code = main(["ingest", "--source", "files", "--path", str(csv), "--tickers", "AAA", "--start", "2024-03-07",
                 "--end", "2024-03-07", "--lake", str(tmp_path / "lake")])
    assert code == 0
    stored = BarLake(str(tmp_path / "lake")).read("1m")
    np.testing.assert_array_equal(stored["volume"].to_numpy(), volume)


def test_cli_ingest_bad_file_is_quarantined_with_exit_1_and_lake_kept(tmp_path, bars_factory, capsys):
    good = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-07")
    assert main(["ingest", "--tickers", "AAA", "--start", "2024-03-07", "--end", "2024-03-07",
                 "--lake", str(tmp_path)]) == 0
    before = BarLake(str(tmp_path)).read("1m")
    csv = tmp_path / "AAA.csv"
    local = pd.to_datetime(good["ts"], utc=True).dt.tz_convert("America/New_York")
    pd.DataFrame({"Datetime": local, "Open": good["open"], "High": good["low"] - 1, "Low": good["low"],
                  "Close": good["close"], "Volume": good["volume"], "Dividends": 0, "Stock Splits": 0}).to_csv(csv, index=False)
    capsys.readouterr()
    code = main(["ingest", "--source", "files", "--path", str(csv), "--tickers", "AAA", "--start", "2024-03-07",
                 "--end", "2024-03-07", "--lake", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1
    assert "validation failed" in out and "expect_column_pair_values_a_to_be_greater_than_b(high,low): 390 row(s)" in out
    assert len(Quarantine(str(tmp_path)).batches()) == 1
    pd.testing.assert_frame_equal(BarLake(str(tmp_path)).read("1m"), before)


@pytest.mark.parametrize(
    "args, message",
    [
        (["ingest", "--tickers", "AAA", "--start", "2024-03-08", "--end", "2024-03-07"], "is after"),
        (["ingest", "--tickers", "AAA", "--start", "2024-03-09", "--end", "2024-03-10"], "trading"),
        (["ingest", "--source", "files", "--tickers", "AAA", "--start", "2024-03-07", "--end", "2024-03-07"], "--path"),
        (["ingest", "--source", "files", "--path", "/nonexistent/x.csv", "--tickers", "AAA", "--start", "2024-03-07",
          "--end", "2024-03-07"], "/nonexistent/x.csv"),
        (["ingest", "--tickers", "not a ticker!", "--start", "2024-03-07", "--end", "2024-03-07"], "ticker"),
    ],
    ids=["reversed_dates", "weekend_only", "files_without_path", "missing_file", "bad_ticker"],
)
def test_cli_user_mistake_gives_one_line_error_and_exit_2(tmp_path, args, message):
    proc = run(*args, "--lake", str(tmp_path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # Ours ("error: ...") or argparse's, for a value its type refuses ("hft ingest: error: argument ...").
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:") or ": error: argument" in line]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_bad_date_format_is_usage_error():
    proc = run("ingest", "--tickers", "AAA", "--start", "March 7", "--end", "2024-03-07")
    assert proc.returncode == 2 and "not a date" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.integration
def test_cli_features_runs_spark_job_and_rerun_is_idempotent(tmp_path):
    assert run("ingest", "--tickers", "AAA,BBB", "--start", "2024-03-07", "--end", "2024-03-08",
               "--lake", str(tmp_path)).returncode == 0
    proc = run("features", "--lake", str(tmp_path), "--master", "local[2]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    features = pd.read_parquet(tmp_path / "features" / "interval=1m")
    assert len(features) == 4 * (390 - 5)
    from hft.model.dataset import label_horizon

    assert label_horizon(str(tmp_path / "features"), "1m") == 5  # recorded for training's embargo check
    # Re-running one date rewrites that date only: same rows, no duplicates.
    proc = run("features", "--lake", str(tmp_path), "--master", "local[2]", "--start", "2024-03-08", "--end", "2024-03-08")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = pd.read_parquet(tmp_path / "features" / "interval=1m")
    assert len(again) == len(features)
    # ... with the same values: the day's overnight gap and volume norm read the day before, not rewritten
    key = ["ticker", "ts"]
    before, after = (f.sort_values(key).reset_index(drop=True) for f in (features, again))
    day = after["date"].astype(str) == "2024-03-08"
    assert after.loc[day, "overnight_gap"].ne(0).all() and after.loc[day, "volume_tod"].ne(0).all()
    pd.testing.assert_frame_equal(after[["overnight_gap", "volume_tod"]], before[["overnight_gap", "volume_tod"]])


@pytest.mark.integration
def test_cli_features_and_training_read_the_sector_map_from_the_environment(tmp_path, monkeypatch):
    """HFT_SECTORS reaches the Spark job (sec_* columns, from the sector ETF's bars) and training's feature list."""
    assert run("ingest", "--source", "synthetic", "--tickers", "AAA,BBB,SPY,XLK", "--start", "2024-03-07",
               "--end", "2024-03-07", "--lake", str(tmp_path)).returncode == 0
    sectors = {"HFT_SECTORS": "AAA:XLK,BBB:XLF"}  # no XLF bars: BBB's sec_* are 0
    proc = run("features", "--lake", str(tmp_path), "--master", "local[2]", "--tickers", "AAA,BBB", env=sectors)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "no bars of XLF for these dates" in proc.stderr + proc.stdout  # said, not silently 0
    features = pd.read_parquet(tmp_path / "features" / "interval=1m")
    assert sorted(features["ticker"].unique()) == ["AAA", "BBB"]
    aaa, bbb = (features[features["ticker"] == t].set_index("ts") for t in ("AAA", "BBB"))
    xlk = BarLake(str(tmp_path)).read("1m", ["XLK"])
    assert aaa["sec_ret_1"].ne(0).sum() > 300 and (bbb["sec_ret_1"] == 0).all()
    close = xlk.set_index(pd.to_datetime(xlk["ts"], utc=True))["close"]
    at = pd.to_datetime(aaa.index[5:], utc=True)  # each AAA bar reads XLK's bar of the same minute
    np.testing.assert_allclose(aaa["sec_ret_1"].iloc[5:], np.log(close / close.shift(1)).loc[at], rtol=1e-9)
    from hft.model.dataset import prepare

    monkeypatch.setenv("HFT_SECTORS", sectors["HFT_SECTORS"])
    _, names = prepare(features)
    assert {"mkt_rel_15", "sec_ret_1", "sec_rel_15"} <= set(names)


@pytest.mark.integration
def test_cli_features_on_empty_lake_fails_clearly(tmp_path):
    proc = run("features", "--lake", str(tmp_path), "--master", "local[1]")
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no 1m bars" in errors[0], proc.stderr[-2000:]


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "--tracking-uri", "http://127.0.0.1:9"], "unreachable"),
        (["train"], "no feature table"),
        (["train", "--set", "widths=64,32,16,8"], "increase"),
        (["train", "--set", "nonsense"], "NAME=VALUE"),
        (["model", "promote"], "--version"),
    ],
    ids=["unreachable_tracking_server", "no_features", "decreasing_widths", "bad_setting", "promote_without_version"],
)
def test_cli_model_mistakes_give_one_line_error_and_exit_2(tmp_path, args, message):
    proc = run(*args, env={"HFT_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "mlartifacts").exists()  # nothing half-written


def test_cli_model_list_on_empty_registry(tmp_path):
    proc = run("model", "list", env={"HFT_HOME": str(tmp_path), "MLFLOW_TRACKING_URI": ""})
    assert proc.returncode == 0 and "no registered versions" in proc.stdout


def test_train_job_without_feature_table_exits_2_with_one_line(tmp_path):
    job = Path(__file__).resolve().parents[2] / "jobs" / "train_model.py"
    proc = subprocess.run([sys.executable, str(job), "--features", str(tmp_path / "none")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "HFT_HOME": str(tmp_path)})
    assert proc.returncode == 2 and "error: no feature table" in proc.stderr and "Traceback" not in proc.stderr


def test_every_project_error_derives_from_one_base():
    from hft.backtest.engine import BacktestInputError
    from hft.backtest.predictions import PredictionsError
    from hft.data.sources.base import SourceError
    from hft.errors import HftError, JobError, UserError
    from hft.execution.journal import JournalError
    from hft.model.dataset import DatasetError
    from hft.model.network import WeightsFileError
    from hft.model.registry import RegistryError
    from hft.schemas import SchemaError
    from hft.stack import StackError
    from hft.streaming.champion import NoChampionError
    from hft.streaming.kafka_io import DeliveryError

    for error in (BacktestInputError, PredictionsError, SourceError, JobError, UserError, JournalError, DatasetError,
                  WeightsFileError, RegistryError, SchemaError, StackError, NoChampionError, DeliveryError):
        assert issubclass(error, HftError), error
