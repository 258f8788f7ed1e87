"""Two "hosts" from one hosts file (hft.stack.hosts): separate process groups with separate data folders
(``HFT_HOME``) on 127.0.0.2 and 127.0.0.3, each started by its own ``hft stack up --host``. Host a runs Kafka node 1,
Redis, the Spark master and worker 1; host b Kafka node 2 and Spark worker 2. The same code as on one machine:
every service binds its host's address only, the Kafka cluster spans both hosts (one cluster id, replicas on both),
and the streaming job (tasks engine) runs on executors of both hosts and predicts every bar once. The file says
``tls = true``, as a deployment across machines would: Kafka's clients, brokers and controllers, Redis and Spark's
RPC are encrypted, with the deployment's CA given to both hosts (hft.tls)."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from datetime import date
from pathlib import Path
from unittest import mock

import pytest

from hft import tls
from hft.redis_conn import connect
from ports import free_kafka_ports, free_ports
from stream_fixtures import expected_probabilities, ready_count, train_champion

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TICKERS = ["AAA", "BBB"]
ADDRESS = {"a": "127.0.0.2", "b": "127.0.0.3"}
HFT = str(Path(sys.executable).with_name("hft"))


def hosts_file(path: Path) -> Path:
    from hft.stack.config import new_kafka_cluster_id

    kafka, controller, metrics = free_kafka_ports(2)
    redis, master, ui = free_ports(3)
    while any(p in (ui + 1, ui + 2) for p in (kafka, controller, metrics, redis, master)):
        redis, master, ui = free_ports(3)
    path.write_text(textwrap.dedent(f"""
        tls = true
        [stack]
        kafka_brokers = 2
        kafka_cluster_id = "{new_kafka_cluster_id()}"
        kafka_port = {kafka}
        kafka_controller_port = {controller}
        kafka_metrics_port = {metrics}
        redis_port = {redis}
        spark_workers = 2
        spark_master_port = {master}
        spark_ui_port = {ui}

        [hosts.a]
        address = "{ADDRESS['a']}"
        services = ["kafka", "redis", "spark-master", "spark-worker-1"]

        [hosts.b]
        address = "{ADDRESS['b']}"
        services = ["kafka-2", "spark-worker-2"]
    """))
    return path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    """{host: (environment, StackConfig)} with both hosts' services up; stopped after."""
    from hft import stack

    top = tmp_path_factory.mktemp("hosts")
    path = hosts_file(top / "hosts.toml")
    shared = {name: secrets.token_urlsafe(16) for name in  # the secrets every host is given (its environment)
              ("HFT_KAFKA_PASSWORD", "HFT_REDIS_PASSWORD", "HFT_SPARK_SECRET", "HFT_SPARK_UI_PASSWORD")}
    shared[tls.CA_CERT_ENV], shared[tls.CA_KEY_ENV] = tls.new_ca("two hosts' CA")  # and the deployment's CA
    base = {k: v for k, v in os.environ.items() if not (k.startswith("HFT_") and k != "HFT_REPO_ROOT")}
    envs = {h: {**base, **shared, "HFT_HOME": str(top / h), "HFT_HOSTS_FILE": str(path), "HFT_HOST": h,
                "HFT_BARS_PARTITIONS": "2", "MLFLOW_TRACKING_URI": f"sqlite:///{top / 'a' / 'mlflow.db'}"}
            for h in ADDRESS}
    configs = {}
    for h, env in envs.items():
        with mock.patch.dict(os.environ, env, clear=True):
            configs[h] = stack.StackConfig.from_env()
    ups = {h: subprocess.Popen([HFT, "stack", "up", "--host", h], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True) for h, env in envs.items()}
    try:
        said = {h: p.communicate(timeout=300)[0] for h, p in ups.items()}
        for h, p in ups.items():
            assert p.returncode == 0, f"hft stack up --host {h}:\n{said[h][-4000:]}"
        yield {h: (envs[h], configs[h], said[h]) for h in ADDRESS}
    finally:
        for h, env in envs.items():
            subprocess.run([HFT, "stack", "down", "--host", h], env=env, capture_output=True, timeout=300)


def test_each_host_starts_its_own_services_bound_to_its_own_address(hosts):
    from hft import stack

    for h, (env, config, said) in hosts.items():
        with mock.patch.dict(os.environ, env, clear=True):
            sockets = stack.listening(config)
        assert set(sockets) == {n for n, host in config.placement.items() if host.name == h}, said
        bound = {addr for found in sockets.values() for addr, _ in found}
        assert bound == {ADDRESS[h]}, f"host {h}'s services listen on {bound}: {sockets}"
        assert not any(Path(config.run_dir, f"{n}.pid").exists() for n, host in config.placement.items()
                       if host.name != h), f"host {h} started another host's service"


def test_kafka_spans_both_hosts_and_the_stream_runs_on_executors_of_both(hosts):
    from confluent_kafka.admin import AdminClient

    from hft.kafka_conn import client_config
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env, config, _ = hosts["a"]
    for h in ADDRESS:  # Spark's RPC between the hosts' daemons, drivers and executors is encrypted
        conf = (hosts[h][1].run_dir / "spark-conf" / "spark-defaults.conf").read_text()
        assert "spark.network.crypto.enabled true" in conf.splitlines()
    with mock.patch.dict(os.environ, env, clear=True):
        assert client_config(config.kafka_bootstrap)["security.protocol"] == "SASL_SSL"
        assert config.redis_url.startswith("rediss://")
        admin = AdminClient(client_config(config.kafka_bootstrap))
        meta = admin.list_topics(timeout=10)
        assert {b.host for b in meta.brokers.values()} == {ADDRESS["a"], ADDRESS["b"]}
        for partition in meta.topics["market.bars"].partitions.values():
            assert sorted(partition.replicas) == [1, 2]  # a copy on each host
        train_champion(Path(env["HFT_HOME"]), TICKERS)
        messages = collectors.synthetic(TICKERS, date(2024, 3, 8), date(2024, 3, 8))[:400]
        assert collectors.publish(messages, config.kafka_bootstrap).failed == 0
        store = RedisStore(connect(config.redis_url))
    master = config.spark_master_url
    assert master == f"spark://{ADDRESS['a']}:{config.spark_master_port}"
    job = subprocess.run([HFT, "stream", "--engine", "tasks", "--master", master, "--tickers", ",".join(TICKERS),
                          "--trigger", "500 milliseconds", "--metrics-port", "0", "--jvm-metrics-port", "0",
                          "--stop-when-idle", "10", "--max-offsets", "200"],
                         env=env, capture_output=True, text=True, timeout=600)
    assert job.returncode == 0, job.stderr[-4000:]
    stream = store.stream()
    assert len(stream) == len({(e["ticker"], e["bar_ts"]) for e in stream}) == ready_count(messages)
    with mock.patch.dict(os.environ, env, clear=True):  # the champion of host a's model store
        expected = expected_probabilities(env["HFT_HOME"], messages)
    assert max(abs(float(e["probability"]) - expected[(e["ticker"], int(e["bar_ts"]))]) for e in stream) < 1e-6
    # An executor of the application ran on each host's worker (its folder is in that host's data folder) and
    # did work there.
    for h, worker in (("a", "spark-worker-1"), ("b", "spark-worker-2")):
        run = hosts[h][1].run_dir / worker
        logs = list(run.glob("app-*/*/stderr"))
        assert logs, f"no executor of the job on host {h} ({run})"
        assert any("Finished task" in p.read_text(errors="replace") for p in logs), f"host {h}'s executor did nothing"
