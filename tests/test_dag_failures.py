"""The failure signal of the DAGs: counted in a Prometheus text file, never lost between processes."""

from __future__ import annotations

import logging
import multiprocessing
from types import SimpleNamespace

from prometheus_client.parser import text_string_to_metric_families

from hft.observability.dag_failures import METRIC, count_failure, on_task_failure, read_failures


def _count_many(path, n):
    for _ in range(n):
        count_failure("market_data", "ingest", path)


def test_counts_accumulate_per_task_and_parse_as_prometheus(tmp_path):
    path = tmp_path / "metrics" / "airflow.prom"
    assert read_failures(path) == {}
    assert count_failure("market_data", "ingest", path) == 1
    assert count_failure("market_data", "ingest", path) == 2
    assert count_failure("model_training", 'we"ird\\task\n', path) == 1
    assert read_failures(path) == {("market_data", "ingest"): 2, ("model_training", 'we"ird\\task\n'): 1}
    families = list(text_string_to_metric_families(path.read_text()))
    assert [f.type for f in families] == ["counter"] and families[0].name == METRIC.removesuffix("_total")


def test_concurrent_task_processes_lose_no_count(tmp_path):
    path = tmp_path / "airflow.prom"
    procs = [multiprocessing.get_context("fork").Process(target=_count_many, args=(path, 25)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert read_failures(path) == {("market_data", "ingest"): 100}


def test_callback_logs_and_counts_and_never_raises(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    ti = SimpleNamespace(dag_id="market_data", task_id="validate", run_id="manual__1", try_number=1)
    with caplog.at_level(logging.ERROR, logger="hft.dags"):
        on_task_failure({"ti": ti, "exception": ValueError("3 tickers quarantined")})
        on_task_failure({})  # a context without a task instance: reported, not raised
    assert read_failures(tmp_path / "metrics" / "airflow.prom") == {("market_data", "validate"): 1}
    assert "market_data.validate run manual__1 try 1: 3 tickers quarantined" in caplog.text
    assert "the failure callback itself failed" in caplog.text
