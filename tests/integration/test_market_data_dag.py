"""The market_data DAG: DagBag integrity, and a real `airflow dags test` run on synthetic data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"


def _airflow_env(tmp_path: Path) -> dict:
    venv_bin = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW_CONN_SPARK_DEFAULT": '{"conn_type": "spark", "host": "local[2]"}',
        "HFT_HOME": str(tmp_path / "var"),
        "HFT_LAKE_ROOT": str(tmp_path / "lake"),
        "HFT_TICKERS": "AAA,BBB",
        "PYSPARK_PYTHON": sys.executable,
        "GX_ANALYTICS_ENABLED": "False",
    }


def test_dagbag_market_data_imports_cleanly_and_is_configured(tmp_path, monkeypatch):
    for key, value in _airflow_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags.get("market_data")
    assert dag is not None
    assert dag.catchup is False and "hft" in dag.tags and dag.doc_md
    assert [t.task_id for t in dag.topological_sort()] == ["ingest", "validate", "features"]
    assert dag.get_task("ingest").retries == 2
    assert dag.get_task("validate").retries == 0  # bad data does not get better by retrying


@pytest.mark.integration
def test_airflow_dags_test_market_data_ingests_validates_and_writes_features(tmp_path):
    env = _airflow_env(tmp_path)
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.run(
        [airflow, "dags", "test", "market_data", "2024-03-08"], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "state=success" in proc.stdout + proc.stderr
    lake = tmp_path / "lake"
    for ticker in ("AAA", "BBB"):
        bars = pd.read_parquet(lake / "bars" / "interval=1m" / f"ticker={ticker}" / "date=2024-03-08")
        assert len(bars) == 390
    features = pd.read_parquet(lake / "features" / "interval=1m")
    assert set(features["ticker"]) == {"AAA", "BBB"}
    assert len(features) == 2 * (390 - 5)  # every bar but the last 5 of the session has a label
    assert list((lake / "_staging").glob("*.parquet")) == []  # staging cleaned up
