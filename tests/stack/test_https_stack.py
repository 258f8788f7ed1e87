"""The stack's web services and PostgreSQL under a hosts file that says ``tls = true`` (hft.tls), on one "host" at
127.0.0.7: PostgreSQL (MLflow's and Airflow's store), the MLflow server, Airflow (API server, scheduler, DAG
processor), Prometheus, Alertmanager, the alert webhook and Redis. Each serves HTTPS (or TLS) only with the host's
certificate: a client of the stack's CA gets in with the login, a client in clear or one trusting another CA does
not; Prometheus scrapes and alerts over HTTPS, Alertmanager notifies the hook over HTTPS, and an Airflow task talks
to the API server's execution API over HTTPS."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import textwrap
import time
import urllib.error
import urllib.request
from unittest import mock

import pytest

from hft import tls
from ports import free_ports, postgres_data_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ADDRESS = "127.0.0.7"
SERVICES = ["postgres", "mlflow", "airflow", "redis", "prometheus", "alertmanager", "alert-hook"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from hft import stack as hft_stack

    top = tmp_path_factory.mktemp("https-stack")
    pg_data = postgres_data_dir()
    ports = dict(zip(("postgres_port", "mlflow_port", "airflow_port", "redis_port", "prometheus_port",
                      "alertmanager_port", "alert_hook_port"), free_ports(7), strict=True))
    (top / "hosts.toml").write_text("tls = true\n[stack]\nmetadata_db = \"postgres\"\n"
                                    + "".join(f"{k} = {v}\n" for k, v in ports.items())
                                    + textwrap.dedent(f"""
                                        [hosts.a]
                                        address = "{ADDRESS}"
                                        services = {json.dumps(SERVICES)}
                                    """))
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HFT_", "AIRFLOW", "MLFLOW"))
            or k == "HFT_REPO_ROOT"}
    env = {**base, "HFT_HOME": str(top / "home"), "HFT_HOSTS_FILE": str(top / "hosts.toml"), "HFT_HOST": "a",
           "HFT_POSTGRES_DATA": str(pg_data), "HFT_LAKE_ROOT": str(top / "lake"), "HFT_AIRFLOW_PARALLELISM": "2"}
    with mock.patch.dict(os.environ, env, clear=True):
        config = hft_stack.StackConfig.from_env()
        try:
            hft_stack.up(config, SERVICES)
            yield config
        finally:
            hft_stack.down(config)
            shutil.rmtree(pg_data, ignore_errors=True)


def get(url: str, auth: tuple[str, str] | None = None, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def endpoints(config) -> dict[str, tuple[str, tuple[str, str] | None]]:
    from hft.stack.base import mlflow_credentials
    from hft.stack.monitoring import ui_credentials

    return {
        "mlflow": (f"{config.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                   mlflow_credentials(config)),
        "airflow": (f"{config.airflow_url}/api/v2/monitor/health", None),
        "prometheus": (f"{config.prometheus_url}/-/ready", ui_credentials(config)),
        "alertmanager": (f"https://{ADDRESS}:{config.alertmanager_port}/-/ready", ui_credentials(config)),
        "alert-hook": (f"https://{ADDRESS}:{config.alert_hook_port}/health", None),
    }


def test_every_web_service_serves_https_only_to_clients_of_the_stack_ca(stack):
    config = stack
    assert config.mlflow_uri.startswith("https://") and config.airflow_url.startswith("https://")
    ours = ssl.create_default_context(cadata=tls.ca_pem())
    foreign = ssl.create_default_context(cadata=tls.new_ca()[0])
    for name, (url, auth) in endpoints(config).items():
        status, body = get(url, auth, ours)
        assert status == 200, f"{name}: {status} {body[:300]!r}"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            get(url, auth, foreign)
        try:  # in clear: the connection is dropped, or (Go's servers) told to use HTTPS; nothing served
            status, body = get(url.replace("https://", "http://", 1), auth)
        except (urllib.error.URLError, ConnectionError, OSError):
            continue
        assert (status, body) == (400, b"Client sent an HTTP request to an HTTPS server.\n"), f"{name} in clear"
    # the logins still hold over TLS
    assert get(endpoints(config)["prometheus"][0], ("hft", "not-the-password"), ours)[0] == 401
    assert get(endpoints(config)["mlflow"][0], None, ours)[0] == 401


def test_postgres_takes_tls_connections_only(stack):
    import psycopg2

    from hft.stack.postgres import USER, password, ssl_params

    config = stack
    where = {"host": ADDRESS, "port": config.postgres_port, "user": USER, "password": password(config),
             "dbname": "mlflow", "connect_timeout": 5}
    with psycopg2.connect(**where, **ssl_params(config)) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        assert cur.fetchone()[0] is True
    with pytest.raises(psycopg2.OperationalError, match="no encryption|reject"):
        psycopg2.connect(**where, sslmode="disable")
    (config.run_dir / "other-ca.pem").write_text(tls.new_ca()[0])
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed|signature failure"):
        psycopg2.connect(**where, sslmode="verify-full", sslrootcert=str(config.run_dir / "other-ca.pem"))


def test_prometheus_scrapes_and_alerts_over_https_and_alertmanager_reaches_the_hook(stack):
    from hft.stack.monitoring import prometheus_get, ui_credentials

    config = stack
    jobs = ("prometheus/https://", "mlflow/https://", "hft/https://")  # hft: the hook, announced over https
    deadline = time.monotonic() + 90
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        targets = json.loads(prometheus_get(config, "/api/v1/targets"))["data"]["activeTargets"]
        health = {f"{t['labels']['job']}/{t['scrapeUrl']}": t["health"] for t in targets}
        if all(any(k.startswith(j) and v == "up" for k, v in health.items()) for j in jobs):
            break
        time.sleep(2)
    assert all(any(k.startswith(j) and v == "up" for k, v in health.items()) for j in jobs), health
    ams = json.loads(prometheus_get(config, "/api/v1/alertmanagers"))["data"]["activeAlertmanagers"]
    assert [a["url"].split("/api/")[0] for a in ams] == [f"https://{ADDRESS}:{config.alertmanager_port}"]
    # An alert posted to Alertmanager reaches the webhook over HTTPS (the hook counts what it receives).
    ours = ssl.create_default_context(cadata=tls.ca_pem())
    alert = [{"labels": {"alertname": "TlsRoundTrip", "severity": "info"},
              "annotations": {"summary": "posted by the TLS test"}}]
    request = urllib.request.Request(f"https://{ADDRESS}:{config.alertmanager_port}/api/v2/alerts",
                                     data=json.dumps(alert).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(ui_credentials(config)).encode()).decode())
    with urllib.request.urlopen(request, timeout=10, context=ours) as resp:
        assert resp.status == 200
    received = 0.0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not received:
        _, body = get(f"https://{ADDRESS}:{config.alert_hook_port}/metrics", None, ours)
        received = sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
                       if line.startswith("hft_alerts_received_total"))
        time.sleep(1)
    assert received >= 1


def test_an_airflow_task_talks_to_the_execution_api_over_https(stack):
    from hft.stack import admin_credentials
    from hft.stack.airflow_rest import AirflowClient

    config = stack
    client = AirflowClient(config.airflow_url, *admin_credentials(config))
    assert {d["dag_id"] for d in client.dags()} >= {"market_data"}
    client.trigger("market_data", logical_date="2024-03-12T22:00:00Z", run_id="tls-bad-tickers",
                   conf={"tickers": "AAA,not a ticker!"})
    client.unpause("market_data")
    try:
        assert client.wait("market_data", "tls-bad-tickers", timeout=300) == "failed"
    finally:
        client.unpause("market_data", paused=True)
    # the task ran (its code refused the parameter): it fetched its context from the execution API and reported
    assert "invalid ticker 'NOT A TICKER!'" in client.task_log("market_data", "tls-bad-tickers", "ingest")
