"""Airflow as the stack runs it: real API server, scheduler and DAG processor; DAG runs through the REST API."""

from __future__ import annotations

import stat
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pandas as pd
import pytest
from dag_runs import run_once

from hft.observability.dag_failures import metrics_file, read_failures
from hft.stack import listening
from hft.stack.airflow_rest import AirflowApiError, AirflowClient

pytestmark = pytest.mark.integration


def test_every_listening_socket_of_the_stack_binds_loopback(ops_stack):
    sockets = listening(ops_stack.config)
    assert set(sockets) == {"postgres", "mlflow", "airflow-api", "airflow-scheduler", "airflow-dag-processor"}
    everything = [(name, addr, port) for name, held in sockets.items() for addr, port in held]
    assert sockets["postgres"] == [("127.0.0.1", ops_stack.config.postgres_port)]  # TCP on loopback, no other
    assert ("airflow-api", "127.0.0.1", ops_stack.config.airflow_port) in everything
    assert ("mlflow", "127.0.0.1", ops_stack.config.mlflow_port) in everything
    assert [s for s in everything if s[1] != "127.0.0.1"] == []
    assert sockets["airflow-scheduler"] == []  # no task-log server (it would listen on 0.0.0.0:8793)


def test_rest_api_wants_a_token_and_the_right_password(ops_stack):
    url = ops_stack.config.airflow_url
    with pytest.raises(urllib.error.HTTPError) as anonymous:
        urllib.request.urlopen(f"{url}/api/v2/dags", timeout=10)
    assert anonymous.value.code == 401
    with pytest.raises(AirflowApiError) as wrong:
        AirflowClient(url, ops_stack.user, ops_stack.password + "x").dags()
    assert wrong.value.status == 401
    assert {d["dag_id"] for d in ops_stack.client().dags()} >= {"market_data", "model_training"}
    home = ops_stack.config.airflow_home
    for secret in (home / "admin-password", home / "secrets.json"):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600, secret
    cfg = (home / "airflow.cfg").read_text()
    assert ops_stack.password not in cfg and "FabAuthManager" in cfg
    assert "jwt_secret =" not in cfg.replace("# jwt_secret", "")


def _wait_for_run(client: AirflowClient, dag_id: str, run_type: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = [r for r in client.runs(dag_id) if r["run_type"] == run_type]
        if runs:
            return runs[0]
        time.sleep(2)
    raise AssertionError(f"no {run_type} run of {dag_id} after {timeout}s: {client.runs(dag_id)}")


def test_market_data_runs_when_triggered_and_on_its_schedule(ops_stack):
    client = ops_stack.client()
    run = client.trigger("market_data", logical_date="2024-03-08T22:00:00Z", run_id="rest-2024-03-08")
    assert run["state"] == "queued"
    assert client.dag("market_data")["is_paused"]  # new DAGs start paused: nothing ran yet
    client.unpause("market_data")
    try:
        assert client.wait("market_data", "rest-2024-03-08", timeout=420) == "success"
        states = {t: ti["state"] for t, ti in client.task_instances("market_data", "rest-2024-03-08").items()}
        assert states == {"ingest": "success", "validate": "success", "features": "success"}
        assert "staged 1170 bars" in client.task_log("market_data", "rest-2024-03-08", "ingest")  # AAA, BBB and SPY
        for ticker in ("AAA", "SPY"):  # the index too: the market context features read it
            bars = pd.read_parquet(ops_stack.lake / "bars" / "interval=1m" / f"ticker={ticker}" / "date=2024-03-08")
            assert len(bars) == 390
        features = pd.read_parquet(ops_stack.lake / "features" / "interval=1m")
        assert features.loc[features["ticker"] == "AAA", "mkt_ret_1"].ne(0).sum() > 300
        # The schedule is real: unpaused, the scheduler creates the latest weekday's 22:00 run itself.
        scheduled = _wait_for_run(client, "market_data", "scheduled")
        assert scheduled["dag_run_id"].startswith("scheduled__")
        assert client.wait("market_data", scheduled["dag_run_id"], timeout=420) == "success"
        logical = datetime.fromisoformat(scheduled["logical_date"].replace("Z", "+00:00"))
        assert logical.weekday() < 5 and logical.hour == 22 and logical < datetime.now(timezone.utc)
    finally:
        client.unpause("market_data", paused=True)


def test_a_bad_run_parameter_is_refused_or_fails_loudly_and_is_counted(ops_stack):
    client = ops_stack.client()
    with pytest.raises(AirflowApiError) as refused:  # outside the param's enum: no run is created
        client.trigger("market_data", logical_date="2024-03-11T22:00:00Z", conf={"source": "nowhere"})
    assert refused.value.status == 400
    before = read_failures(metrics_file(ops_stack.config.home)).get(("market_data", "ingest"), 0)
    client.trigger("market_data", logical_date="2024-03-12T22:00:00Z", run_id="bad-tickers",
                   conf={"tickers": "AAA,not a ticker!"})
    client.unpause("market_data")
    try:
        assert client.wait("market_data", "bad-tickers", timeout=300) == "failed"
    finally:
        client.unpause("market_data", paused=True)
    ingest = client.task_instances("market_data", "bad-tickers")["ingest"]
    assert ingest["state"] == "failed" and ingest["try_number"] == 1  # a bad parameter is not retried
    log_text = client.task_log("market_data", "bad-tickers", "ingest")
    assert "invalid ticker 'NOT A TICKER!'" in log_text
    assert read_failures(metrics_file(ops_stack.config.home))[("market_data", "ingest")] == before + 1
    prom = metrics_file(ops_stack.config.home).read_text()
    assert 'hft_airflow_task_failures_total{dag_id="market_data",task_id="ingest"}' in prom


def test_model_training_evaluates_gates_and_shows_the_verdict_in_airflow_and_mlflow(ops_stack, training_run, ops_login):
    from hft.model import registry

    client = ops_stack.client()
    assert client.run("model_training", training_run)["state"] == "success"
    evaluated = client.xcom("model_training", training_run, "evaluate")
    assert evaluated["reproduces_training"] is True and evaluated["holdout_rows"] > 0
    gate = client.xcom("model_training", training_run, "gate")
    assert gate["verdict"] in ("approved", "rejected") and gate["reason"]
    assert gate["promote"] is (gate["verdict"] == "approved")  # a plain bool in XCom, not a numpy repr
    assert f"gate verdict for version {gate['version']}: {gate['verdict'].upper()}" in client.task_log(
        "model_training", training_run, "gate")
    # The same story in MLflow, through the stack's tracking server.
    c = registry.client(ops_stack.config.mlflow_uri)
    mv = c.get_model_version(registry.MODEL_NAME, gate["version"])
    assert mv.tags["gate_verdict"] == gate["verdict"] and mv.tags["gate_reason"] == gate["reason"][:4000]
    assert float(mv.tags["evaluated_auc"]) == pytest.approx(evaluated["evaluated_auc"], abs=1e-6)
    assert {a.path for a in c.list_artifacts(mv.run_id, "evaluation_report")} >= {"evaluation_report/report.md"}
    assert f"Gate: {gate['verdict'].upper()}" in mv.description
    champion = registry.alias_version(c, registry.CHAMPION)
    assert (champion == gate["version"]) == (gate["verdict"] == "approved")


def test_airflow_and_mlflow_keep_their_state_in_postgresql(ops_stack, training_run, ops_login, monkeypatch):
    """The production backend: the DAG runs and the registry are rows in the stack's PostgreSQL; no SQLite file
    was made; the CLI (no MLFLOW_TRACKING_URI) reads the same registry from PostgreSQL as the UI's server."""
    import psycopg2

    from hft.model import registry
    from hft.stack.postgres import password

    def query(database: str, sql: str, *args) -> list[tuple]:
        conn = psycopg2.connect(host="127.0.0.1", port=ops_stack.config.postgres_port, user="hft",
                                password=password(ops_stack.config), dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    assert query("airflow", "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s",
                 "model_training", training_run) == [("success",)]
    server = registry.client(ops_stack.config.mlflow_uri)
    versions = {mv.version for mv in server.search_model_versions(f"name = '{registry.MODEL_NAME}'")}
    rows = query("mlflow", "SELECT version FROM model_versions WHERE name = %s", registry.MODEL_NAME)
    assert versions == {"1"} and {str(v) for (v,) in rows} == versions  # one training: rest-training's
    # No SQLite store anywhere (MLflow's Prometheus multiprocess files in run/mlflow-metrics are not stores).
    stores = [p for p in ops_stack.config.home.rglob("*.db") if p.read_bytes()[:16] == b"SQLite format 3\x00"]
    assert stores == [] and not (ops_stack.config.home / "mlflow.db").exists()
    # The CLI's default store follows HFT_METADATA_DB: the same PostgreSQL database, read directly.
    for key, value in ops_stack.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    uri = registry.default_tracking_uri()
    assert uri.startswith("postgresql") and uri.endswith(f"127.0.0.1:{ops_stack.config.postgres_port}/mlflow")
    direct = registry.client()
    assert {str(mv.version) for mv in direct.search_model_versions(f"name = '{registry.MODEL_NAME}'")} == versions
    # The MLflow admin's password reached the server and every DAG task that logged in (model_training's), and
    # no log, DAG run record, artifact or database file of the stack: only its own secret file holds it.
    from hft.stack.base import mlflow_credentials
    from stream_fixtures import files_holding

    secret = ops_stack.config.home / "secrets" / "mlflow-password"
    assert files_holding(ops_stack.config.home, mlflow_credentials(ops_stack.config)[1], {secret}) == []


def test_daily_retraining_warm_starts_the_champion_through_the_same_gate(ops_stack, training_run, ops_login):
    """Last in this file: it registers versions and may move the champion."""
    from hft.model import registry

    client = ops_stack.client()
    uri = ops_stack.config.mlflow_uri
    c = registry.client(uri)
    champion = registry.alias_version(c, registry.CHAMPION)
    if champion is None:  # the weekly training's model was refused: nothing to start from, skipped (not failed)
        assert run_once(client, "model_retraining", "2024-01-24T22:30:00Z", "rest-retraining-none") == "success"
        tasks = client.task_instances("model_retraining", "rest-retraining-none")
        assert {t: ti["state"] for t, ti in tasks.items()} == {
            "features_ready": "success", "train": "skipped", "evaluate": "skipped", "gate": "skipped",
            "promote": "skipped"}
        assert "no champion to warm-start from" in client.task_log("model_retraining", "rest-retraining-none", "train")
        champion = client.xcom("model_training", training_run, "gate")["version"]
        registry.promote(champion, reason="operator", tracking_uri=uri, by="test (as hft model promote --force)")
    assert run_once(client, "model_retraining", "2024-01-25T22:30:00Z", "rest-retraining") == "success"
    tasks = client.task_instances("model_retraining", "rest-retraining")
    assert {ti["state"] for ti in tasks.values()} == {"success"}, tasks
    gate = client.xcom("model_retraining", "rest-retraining", "gate")
    run = c.get_run(c.get_model_version(registry.MODEL_NAME, gate["version"]).run_id)
    params = run.data.params
    assert params["warm_start_from"] == champion and params["warm_sessions"] == "10" and params["warm_epochs"] == "3"
    # the newest 10 sessions of the lake's features (market_data's runs in this file added some after January)
    from hft.model.dataset import load_feature_table

    sessions = sorted({str(d) for d in load_feature_table(str(ops_stack.lake / "features"))["date"]})
    assert params["last_session"] == sessions[-1] and params["first_session"] == sessions[-10]
    assert gate["reason"].startswith("challenger AUC") and f"champion v{champion}" in gate["reason"]
    assert (registry.alias_version(c, registry.CHAMPION) == gate["version"]) == gate["promote"]
