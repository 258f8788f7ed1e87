"""The DAGs' structure (DagBag). They run through the real scheduler and REST API in test_airflow_rest.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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


def _dags_test(env: dict, dag_id: str, day: str) -> subprocess.CompletedProcess:
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    proc = subprocess.run([airflow, "dags", "test", dag_id, day], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "state=success" in proc.stdout + proc.stderr
    return proc


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
    assert set(dag.params.keys()) == {"source", "tickers"}
    from hft.observability.dag_failures import on_task_failure

    assert all(on_task_failure in (t.on_failure_callback or []) or t.on_failure_callback is on_task_failure
               for t in dag.tasks)


def test_dagbag_model_training_is_wired_in_order(tmp_path, monkeypatch):
    for key, value in _airflow_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    dag = bag.dags["model_training"]
    assert dag.catchup is False and "model" in dag.tags
    assert [t.task_id for t in dag.topological_sort()] == ["features_ready", "train", "evaluate", "gate", "promote"]
    # the daily online-learning DAG: the same steps, warm-started from the champion, Monday to Thursday
    daily = bag.dags["model_retraining"]
    assert "online-learning" in daily.tags and daily.catchup is False
    assert [t.task_id for t in daily.topological_sort()] == ["features_ready", "train", "evaluate", "gate", "promote"]
    assert daily.timetable.expression == "30 22 * * 1-4"
