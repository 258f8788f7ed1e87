"""Stopping and restarting the stack, and the ways `up` refuses or fails with a clear StackError."""

from __future__ import annotations

import socket
import time

import pytest

from hft.kafka_conn import client_config
from hft.stack import ALL_SERVICES, StackError, TopicSpec, down, ensure_topics, status, up
from hft.stack.process import alive, port_in_use, read_pid
from ports import stack_home

pytestmark = pytest.mark.integration


@pytest.fixture
def config(tmp_path, make_stack_config):
    cfg = make_stack_config(tmp_path)
    with stack_home(cfg):
        yield cfg
    down(cfg)  # even when the test failed half-way


def test_down_stops_everything_and_up_again_keeps_the_data(config):
    from confluent_kafka.admin import AdminClient

    from hft.redis_conn import connect

    up(config, ["kafka", "redis"])
    pids = {n: read_pid(config.run_dir / f"{n}.pid") for n in ("kafka", "redis")}
    assert ensure_topics(config.kafka_bootstrap, {"bars": TopicSpec(2, 86_400_000)}) == {"bars": "created"}
    client = connect(config.redis_url, decode_responses=False)
    client.set("hft:kept", "yes")
    client.close()

    t0 = time.monotonic()
    stopped = down(config)
    assert time.monotonic() - t0 < 60
    assert stopped["kafka"].startswith("stopped") and stopped["redis"].startswith("stopped"), stopped
    assert stopped["mlflow"] == "not running"
    for name, pid in pids.items():
        assert not alive(pid), name
        assert not (config.run_dir / f"{name}.pid").exists()
    for port in (config.kafka_port, config.kafka_controller_port, config.kafka_metrics_port, config.redis_port):
        assert not port_in_use(port), port
    assert not any(s.running or s.healthy for s in status(config).values())
    assert down(config) == dict.fromkeys(set(ALL_SERVICES) - {"spark"}, "not running")  # no Spark cluster here

    # Second start: the storage is not formatted again, topics and keys survive (AOF).
    again = up(config, ["kafka", "redis"])
    assert all(v.startswith("started") for v in again.values()), again
    assert "bars" in AdminClient(client_config(config.kafka_bootstrap)).list_topics(timeout=10).topics
    assert ensure_topics(config.kafka_bootstrap, {"bars": TopicSpec(2, 86_400_000)}) == {"bars": "exists"}
    client = connect(config.redis_url, decode_responses=False)
    assert client.get("hft:kept") == b"yes"
    client.close()
    assert (config.run_dir / "kafka.log").read_text().count("storage format") == 1


def test_taken_port_gives_a_clear_error_and_starts_nothing(config):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.redis_port))
        squatter.listen()
        with pytest.raises(StackError) as err:
            up(config, ["kafka", "redis"])
    msg = str(err.value)
    assert f"port 127.0.0.1:{config.redis_port} is already in use" in msg
    assert "HFT_REDIS_PORT" in msg
    assert "python" in msg  # the owner: this very test process
    # The check comes before any start: Kafka was not started either.
    assert not (config.run_dir / "kafka.pid").exists() and not (config.run_dir / "redis.pid").exists()


def test_taken_kafka_controller_port(config):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", config.kafka_controller_port))
        squatter.listen()
        port = config.kafka_controller_port
        with pytest.raises(StackError, match=rf"kafka: port 127.0.0.1:{port} .*HFT_KAFKA_CONTROLLER_PORT"):
            up(config, ["kafka"])


def test_service_dying_during_start_reports_its_log(config, tmp_path, monkeypatch):
    # A checkout whose Redis template has a directive Redis refuses: redis-server exits at once.
    template = tmp_path / "checkout" / "infra" / "redis" / "redis.conf.template"
    template.parent.mkdir(parents=True)
    template.write_text("bind 127.0.0.1\n${listen}\ndir ${dir}\nnot-a-redis-directive yes\n")
    monkeypatch.setenv("HFT_REPO_ROOT", str(tmp_path / "checkout"))
    with pytest.raises(StackError) as err:
        up(config, ["redis"])
    msg = str(err.value)
    assert "redis exited while starting" in msg
    assert "not-a-redis-directive" in msg  # Redis's own complaint, from the end of redis.log
    assert not (config.run_dir / "redis.pid").exists()
    assert not status(config)["redis"].running


def test_postgres_is_initialised_once_keeps_its_databases_and_stops_fast(tmp_path, make_stack_config):
    import shutil

    import psycopg2

    from hft.stack.postgres import ensure_database, password
    from ports import postgres_data_dir

    data = postgres_data_dir()
    cfg = make_stack_config(tmp_path, metadata_db="postgres", postgres_data=data)
    try:
        assert up(cfg, ["postgres"])["postgres"].startswith("started")
        assert ensure_database(cfg, "mlflow") is True and ensure_database(cfg, "mlflow") is False
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(host="127.0.0.1", port=cfg.postgres_port, user="hft", password="wrong", dbname="mlflow")
        pid = read_pid(cfg.run_dir / "postgres.pid")
        t0 = time.monotonic()
        assert down(cfg, ["postgres"])["postgres"].startswith("stopped")  # fast shutdown: no wait for clients
        assert time.monotonic() - t0 < 15 and not alive(pid) and not port_in_use(cfg.postgres_port)
        up(cfg, ["postgres"])
        assert ensure_database(cfg, "mlflow") is False  # the data survived the restart
        conn = psycopg2.connect(host="127.0.0.1", port=cfg.postgres_port, user="hft", password=password(cfg),
                                dbname="mlflow")
        conn.close()
        assert (cfg.run_dir / "postgres.log").read_text().count("initdb (exit 0)") == 1
    finally:
        down(cfg)
        shutil.rmtree(data.parent, ignore_errors=True)


def test_postgres_refuses_a_data_folder_its_user_cannot_reach(tmp_path, make_stack_config):
    """As root the server runs as the postgres user; pytest's folders are private to root (mode 0700)."""
    import os

    cfg = make_stack_config(tmp_path, metadata_db="postgres")
    if os.geteuid() != 0:  # not root: the server runs as us and the folder is ours
        try:
            assert up(cfg, ["postgres"])["postgres"].startswith("started")
        finally:
            down(cfg)
        return
    with pytest.raises(StackError, match="cannot reach .* set HFT_POSTGRES_DATA"):
        up(cfg, ["postgres"])
    assert not port_in_use(cfg.postgres_port)


def test_airflow_on_the_embedded_default_needs_no_setup(tmp_path, make_stack_config, monkeypatch):
    """SQLite, no variables set: `up` migrates, creates the admin, and the DAGs are served (the production
    PostgreSQL backend is what the operators' stack in tests/integration runs on)."""
    from hft.stack import AIRFLOW_SERVICES, admin_credentials
    from hft.stack.airflow_rest import AirflowClient

    for key in ("HFT_AIRFLOW_DB_URL", "HFT_METADATA_DB", "HFT_AIRFLOW_ADMIN_PASSWORD", "AIRFLOW_HOME"):
        monkeypatch.delenv(key, raising=False)
    cfg = make_stack_config(tmp_path)
    try:
        started = up(cfg, ["airflow"])
        assert set(started) == set(AIRFLOW_SERVICES)  # no PostgreSQL for the embedded default
        assert (cfg.airflow_home / "airflow.db").exists()
        assert all(st.healthy for name, st in status(cfg).items() if name in AIRFLOW_SERVICES)
        client = AirflowClient(cfg.airflow_url, *admin_credentials(cfg))
        deadline = time.monotonic() + 90
        while {d["dag_id"] for d in client.dags()} < {"market_data", "model_training"}:
            assert time.monotonic() < deadline, "the DAG processor did not serve the project's DAGs"
            time.sleep(1)

        # an operator's own password that starts with "-" (CI once generated one: `--password -...` was taken for
        # an option and `airflow users create` failed) is set on the next `up` and logs in
        down(cfg)
        monkeypatch.setenv("HFT_AIRFLOW_ADMIN_PASSWORD", "-starts-with-a-dash")
        up(cfg, ["airflow"])
        assert admin_credentials(cfg)[1] == "-starts-with-a-dash"
        assert {"market_data", "model_training"} <= {d["dag_id"] for d in AirflowClient(
            cfg.airflow_url, *admin_credentials(cfg)).dags()}
    finally:
        down(cfg)


def test_generated_secrets_never_start_with_a_dash(monkeypatch):
    import secrets

    from hft.stack.base import token

    drawn = iter(["-looks-like-an-option", "-again", "fine-one"])
    monkeypatch.setattr(secrets, "token_urlsafe", lambda nbytes: next(drawn))
    assert token(24) == "fine-one"
