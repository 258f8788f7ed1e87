"""Real market data in the loop, test-sized: four sessions of real 1-minute SPY and QQQ bars (tests/real_data, a
slice of the shared yfinance ETF sample) through the commands a user runs: ingest from the CSVs as yfinance
writes them, the Spark feature job, training with the holdout evaluation against the baselines. The full sample
is bench/model_real.py (figures in the README)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.spark]

DATA = Path(__file__).parents[1] / "real_data" / "yfinance-1m-etf"
HFT = str(Path(sys.executable).with_name("hft"))


def hft(env: dict, *argv: str) -> str:
    proc = subprocess.run([HFT, *argv], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_real_bars_ingest_features_train_and_holdout_report(tmp_path):
    import mlflow

    env = {**{k: v for k, v in os.environ.items() if k != "HFT_LAKE_ROOT"}, "HFT_HOME": str(tmp_path),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    # every regular-session minute once (SPY's file has 2019-12-20 09:30 twice, as Yahoo sent it)
    rows = {t: len({line[:19] for line in (DATA / f"{t}.csv").read_text().splitlines()[1:]
                    if "09:30:00" <= line[11:19] < "16:00:00"}) for t in ("SPY", "QQQ")}
    said = hft(env, "ingest", "--source", "files", "--path", str(DATA), "--tickers", "SPY,QQQ",
               "--start", "2019-12-17", "--end", "2019-12-20")
    fetched = int(re.search(r"fetched (\d+) bars: \1 new", said).group(1))
    assert fetched == sum(rows.values()) > 2500, said  # every regular-session minute, nothing quarantined
    hft(env, "features", "--master", "local[2]")
    table = hft(env, "train", "--no-promote", "--set", "epochs=3", "--set", "folds=1", "--set", "bootstrap=50")
    figures = {m.group(1): (float(m.group(2)), float(m.group(3)), float(m.group(4))) for m in re.finditer(
        r"^(model|majority_class|last_return_sign|logistic_regression|gradient_boosted_trees)\s+(0\.\d+) "
        r"\[(0\.\d+), (0\.\d+)\]", table,
        re.MULTILINE)}
    assert set(figures) == {"model", "majority_class", "last_return_sign", "logistic_regression",
                            "gradient_boosted_trees"}, table
    for auc, low, high in figures.values():
        assert 0.0 <= low <= auc <= high <= 1.0
    assert figures["majority_class"] == (0.5, 0.5, 0.5)
    assert re.search(r"^permutation importance \(holdout AUC lost when shuffled\): \w+ [+-]0\.\d{4}", table, re.MULTILINE)
    assert re.search(r"^drift over the last 1 sessions \(\d+ rows\): PSI max \d+\.\d{3}", table, re.MULTILINE), table
    for strong in ("logistic_regression", "gradient_boosted_trees"):
        assert re.search(rf"model (BEATS|does NOT beat) {strong}: AUC difference -?0\.\d+ \[", table)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    run = mlflow.search_runs(experiment_names=["hft-direction"], output_format="list")[0]
    assert run.data.params["tickers"] == "QQQ,SPY" and int(run.data.params["rows"]) > 1000
    assert abs(run.data.metrics["model_auc"] - figures["model"][0]) < 1e-4
    assert abs(run.data.metrics["logistic_regression_auc"] - figures["logistic_regression"][0]) < 1e-4
    assert abs(run.data.metrics["gradient_boosted_trees_auc"] - figures["gradient_boosted_trees"][0]) < 1e-4
    assert "recent_auc" in run.data.metrics and "psi_max" in run.data.metrics
