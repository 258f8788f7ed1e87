"""The real local stack (Kafka KRaft, Redis, MLflow) on free loopback ports, started once for this module."""

from __future__ import annotations

import json
import os
import time
import urllib.request
import uuid
from unittest import mock

import pytest

from hft.kafka_conn import client_config
from hft.stack import (
    AIRFLOW_SERVICES,
    LOGGING_SERVICES,
    MONITORING_SERVICES,
    StackError,
    TopicSpec,
    ensure_topics,
    status,
    up,
)
from hft.stack.process import read_pid
from ports import stack_home

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def stack(tmp_path_factory, make_stack_config):
    cfg = make_stack_config(tmp_path_factory.mktemp("stack"))
    from hft.stack import down

    try:
        with stack_home(cfg):
            t0 = time.monotonic()
            first = up(cfg)
            first["_seconds"] = f"{time.monotonic() - t0:.1f}"
            yield cfg, first
    finally:
        down(cfg)


def test_up_starts_every_service_healthy(stack):
    cfg, first = stack
    for name in ("kafka", "redis", "mlflow"):
        assert first[name].startswith("started"), first
        assert (cfg.run_dir / f"{name}.pid").is_file()
        assert (cfg.run_dir / f"{name}.log").stat().st_size > 0
    assert (cfg.run_dir / "kafka" / "data" / "meta.properties").is_file()
    assert (cfg.run_dir / "redis" / "redis.conf").is_file()


def test_up_is_idempotent(stack):
    cfg = stack[0]
    pids = {n: read_pid(cfg.run_dir / f"{n}.pid") for n in ("kafka", "redis", "mlflow")}
    t0 = time.monotonic()
    again = up(cfg)
    assert time.monotonic() - t0 < 10
    assert all(v.startswith("already running") for v in again.values()), again
    assert {n: read_pid(cfg.run_dir / f"{n}.pid") for n in pids} == pids


def test_status_reports_running_and_healthy(stack):
    cfg = stack[0]
    st = status(cfg)
    assert set(st) == {"postgres", "kafka", "redis", "mlflow", *AIRFLOW_SERVICES, *MONITORING_SERVICES, *LOGGING_SERVICES}
    for name in (*AIRFLOW_SERVICES, *MONITORING_SERVICES, *LOGGING_SERVICES, "postgres"):  # not asked for: not started
        assert not st.pop(name).running
    for name, s in st.items():
        assert s.name == name
        assert s.running and s.healthy, s
        assert s.pid == read_pid(cfg.run_dir / f"{name}.pid")
    assert st["kafka"].address == cfg.kafka_bootstrap
    assert st["redis"].address == cfg.redis_url
    assert st["mlflow"].address == cfg.mlflow_uri
    assert "redis 7" in st["redis"].detail


def test_ensure_topics_creates_with_partitions_and_retention(stack):
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    cfg = stack[0]
    bars, state = f"bars-{uuid.uuid4().hex[:8]}", f"state-{uuid.uuid4().hex[:8]}"
    specs = {bars: TopicSpec(partitions=3, retention_ms=3_600_000),
             state: TopicSpec(partitions=1, retention_ms=-1, cleanup_policy="compact")}
    assert ensure_topics(cfg.kafka_bootstrap, specs) == {bars: "created", state: "created"}

    admin = AdminClient(client_config(cfg.kafka_bootstrap))
    md = admin.list_topics(timeout=10)
    assert len(md.topics[bars].partitions) == 3
    assert len(md.topics[state].partitions) == 1
    futures = admin.describe_configs([ConfigResource(ResourceType.TOPIC, t) for t in (bars, state)])
    got = {res.name: {k: v.value for k, v in fut.result(timeout=10).items()} for res, fut in futures.items()}
    assert got[bars]["retention.ms"] == "3600000"
    assert got[bars]["cleanup.policy"] == "delete"
    assert got[state]["retention.ms"] == "-1"
    assert got[state]["cleanup.policy"] == "compact"

    # Idempotent: existing topics are left as they are, even when the spec differs.
    again = ensure_topics(cfg.kafka_bootstrap, {bars: TopicSpec(partitions=5, retention_ms=1000), state: specs[state]})
    assert again == {bars: "exists (3 partitions, wanted 5)", state: "exists"}
    assert len(admin.list_topics(timeout=10).topics[bars].partitions) == 3


def test_topics_are_not_auto_created(stack):
    from confluent_kafka import Producer

    cfg = stack[0]
    topic = f"stray-{uuid.uuid4().hex[:8]}"
    errors = []
    p = Producer(client_config(cfg.kafka_bootstrap, {"message.timeout.ms": 3000,
                                                     "topic.metadata.propagation.max.ms": 1000}))
    p.produce(topic, b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    from confluent_kafka.admin import AdminClient

    assert topic not in AdminClient(client_config(cfg.kafka_bootstrap)).list_topics(timeout=10).topics


def test_kafka_produce_consume_round_trip(stack):
    from confluent_kafka import Consumer, Producer

    cfg = stack[0]
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    ensure_topics(cfg.kafka_bootstrap, {topic: TopicSpec(partitions=2, retention_ms=600_000)})
    payload = json.dumps({"ticker": "AAA", "close": 101.25}).encode()
    delivered = []
    producer = Producer(client_config(cfg.kafka_bootstrap, {"acks": "all"}))
    producer.produce(topic, key=b"AAA", value=payload, on_delivery=lambda err, msg: delivered.append((err, msg)))
    assert producer.flush(15) == 0
    assert delivered and delivered[0][0] is None

    consumer = Consumer(client_config(cfg.kafka_bootstrap, {"group.id": f"g-{topic}", "auto.offset.reset": "earliest",
                                                            "enable.auto.commit": False}))
    try:
        consumer.subscribe([topic])
        deadline, msg = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                break
        assert msg is not None and msg.error() is None, "no message consumed within 30s"
        assert (msg.key(), msg.value()) == (b"AAA", payload)
    finally:
        consumer.close()


def test_redis_ping_and_append_only_file(stack):
    from hft.redis_conn import connect

    cfg = stack[0]
    client = connect(cfg.redis_url, decode_responses=False)
    assert client.ping()
    assert client.config_get("appendonly") == {"appendonly": "yes"}
    assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    assert client.config_get("bind")["bind"] == "127.0.0.1"
    assert client.config_get("dir")["dir"] == str(cfg.run_dir / "redis")
    client.set("hft:test", "1")
    assert client.get("hft:test") == b"1"
    client.close()


def test_kafka_lets_nobody_in_without_the_stack_users_password(stack):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from hft.kafka_conn import SECRET_NAME, KafkaLogin, login

    cfg = stack[0]
    secret = cfg.home / "secrets" / SECRET_NAME
    password = secret.read_text().strip()
    assert len(password) >= 24 and login() == KafkaLogin("hft", password)
    node = cfg.run_dir / "kafka"
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in (secret, node / "server.properties"))

    def topics(conf: dict) -> set:
        return set(AdminClient({**conf, "log_level": 0}).list_topics(timeout=8).topics)

    mine = f"auth-{uuid.uuid4().hex[:8]}"
    ensure_topics(cfg.kafka_bootstrap, {mine: TopicSpec(partitions=1, retention_ms=600_000)})
    assert mine in topics(client_config(cfg.kafka_bootstrap))  # the stack's user: in
    refused = [{"bootstrap.servers": cfg.kafka_bootstrap},  # no SASL at all
               client_config(cfg.kafka_bootstrap, auth=KafkaLogin("hft", password + "x")),
               client_config(cfg.kafka_bootstrap, auth=KafkaLogin("admin", password)),
               client_config(cfg.kafka_bootstrap, {"sasl.mechanism": "PLAIN"})]  # the password in clear: not offered
    for conf in refused:
        with pytest.raises(KafkaException):
            topics(conf)
    # the broker's log, its metadata and its data hold no password (the format's output is scrubbed)
    assert not [str(p) for p in node.rglob("*") if p.is_file() and p.name != "server.properties"
                and password.encode() in p.read_bytes()]
    assert password not in (cfg.run_dir / "kafka.log").read_text()


def test_redis_lets_nobody_in_without_the_stack_users_password(stack):
    import redis

    from hft.redis_conn import USER

    cfg = stack[0]
    password = cfg.redis_password_file.read_text().strip()
    assert len(password) >= 24
    assert password not in cfg.redis_url and cfg.redis_url.startswith(f"redis://{USER}@")  # the URL holds none
    for private in (cfg.redis_password_file, cfg.run_dir / "redis" / "redis.conf"):
        assert private.stat().st_mode & 0o777 == 0o600, private
    anonymous = redis.Redis(host="127.0.0.1", port=cfg.redis_port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):  # NOAUTH: the default user is off
        anonymous.get("hft:test")
    for user, wrong in ((USER, password[:-1] + ("x" if password[-1] != "x" else "y")), ("default", password),
                        ("admin", password)):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=cfg.redis_port, username=user, password=wrong).ping()
    assert redis.Redis(host="127.0.0.1", port=cfg.redis_port, username=USER, password=password).ping()


def _mlflow_get(url: str, auth: tuple[str, str] | None = None):
    from hft.stack.base import basic_auth

    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", basic_auth(*auth))
    return urllib.request.urlopen(request, timeout=30)


def test_mlflow_server_answers_only_its_users(stack):
    import urllib.error

    from hft.model import registry
    from hft.stack.base import mlflow_credentials

    cfg = stack[0]
    user, password = mlflow_credentials(cfg)
    assert (cfg.home / "secrets" / "mlflow-password").stat().st_mode & 0o777 == 0o600
    with _mlflow_get(f"{cfg.mlflow_uri}/health") as resp:  # the one open page: health checks
        assert resp.status == 200
    search = f"{cfg.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=5"
    for who in (None, (user, password + "x"), ("nobody", password)):
        for url in (search, f"{cfg.mlflow_uri}/", f"{cfg.mlflow_uri}/metrics"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                _mlflow_get(url, who)
            assert refused.value.code == 401, (url, who and who[0])
    with _mlflow_get(search, (user, password)) as resp:
        body = json.load(resp)
    assert any(e["name"] == "Default" for e in body.get("experiments", []))
    assert (cfg.home / "mlflow.db").is_file()
    # hft's own client logs in by itself (the password from HFT_HOME), as the CLI and the DAG tasks do
    with mock.patch.dict(os.environ):
        for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "HFT_MLFLOW_PASSWORD"):
            os.environ.pop(name, None)
        assert registry.client(cfg.mlflow_uri).search_experiments(max_results=5)
        assert os.environ["MLFLOW_TRACKING_USERNAME"] == user


def test_second_stack_on_the_same_ports_is_refused(stack, tmp_path):
    """A second stack (another run dir) on the same ports must not start: the ports are someone else's."""
    from dataclasses import replace

    cfg = stack[0]
    other = replace(cfg, run_dir=tmp_path / "run", home=tmp_path)
    taken = rf"port 127.0.0.1:{cfg.redis_port} is already in use by pid \d+ \(.*redis-server"
    with pytest.raises(StackError, match=taken):
        up(other, ["redis"])
    assert not (other.run_dir / "redis.pid").exists()
    st = status(other)["redis"]
    # someone else's Redis: it answers, but not to this stack's user (its password is another)
    assert not st.running and not st.healthy and "not started by hft stack" in st.detail


def test_the_broker_serves_its_jmx_metrics_on_loopback(stack):
    """The Prometheus JMX exporter agent in Kafka's JVM: the gauges the Kafka alert rules use."""
    import urllib.request

    from hft.stack import listening

    cfg = stack[0]
    text = urllib.request.urlopen(f"http://127.0.0.1:{cfg.kafka_metrics_port}/metrics", timeout=10).read().decode()
    assert "kafka_server_replicamanager_underreplicatedpartitions 0.0" in text
    assert "kafka_controller_offlinepartitionscount 0.0" in text
    assert "jvm_memory_used_bytes" in text or "java_lang_memory" in text
    kafka = listening(cfg)["kafka"]
    assert ("127.0.0.1", cfg.kafka_metrics_port) in kafka and all(addr == "127.0.0.1" for addr, _ in kafka), kafka


def test_the_streams_kafka_lag_is_measured_against_its_committed_offsets(stack):
    """High watermark less the stream's next offset (from Redis), per partition; at most every every_s."""
    from confluent_kafka import Producer
    from prometheus_client import REGISTRY

    from hft.streaming.kafka_io import KafkaLag

    cfg = stack[0]
    topic = f"bars-{uuid.uuid4().hex[:8]}"
    ensure_topics(cfg.kafka_bootstrap, {topic: TopicSpec(partitions=2, retention_ms=3_600_000)})
    producer = Producer(client_config(cfg.kafka_bootstrap))
    for i in range(10):
        producer.produce(topic, value=b"x", partition=i % 2)
    assert producer.flush(10) == 0
    lag = KafkaLag(cfg.kafka_bootstrap, topic, every_s=3600)
    try:
        assert lag.update(lambda: {(topic, 0): 2}) == {0: 3, 1: 5}  # partition 1: nothing processed yet
        assert REGISTRY.get_sample_value("hft_stream_kafka_lag_messages", {"partition": "0"}) == 3
        assert lag.update(lambda: {(topic, 0): 5, (topic, 1): 5}) is None  # not due: no request made
    finally:
        lag.close()


def test_mlflow_serves_prometheus_metrics(stack):

    cfg = stack[0]
    from hft.stack.base import mlflow_credentials

    login = mlflow_credentials(cfg)
    _mlflow_get(f"{cfg.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1", login).read()
    text = _mlflow_get(f"{cfg.mlflow_uri}/metrics", login).read().decode()
    assert "mlflow_http_request_total" in text or "flask_http_request_total" in text, text[:500]
