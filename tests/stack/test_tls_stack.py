"""A stack whose hosts file says ``tls = true`` (hft.tls): the real Kafka broker, Redis with two replicas and three
Sentinels, and the Redis exporter, on one "host" at 127.0.0.6 started by ``hft.stack.up``. Every client of the
project gets in over TLS; a client in clear, one that trusts another CA and one without the password are refused;
Kafka's controller listener takes only peers holding a certificate of the stack's CA."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import struct
import subprocess
import textwrap
import uuid
from pathlib import Path
from unittest import mock

import pytest

from hft import tls
from ports import free_kafka_ports, free_ports

pytestmark = pytest.mark.integration

ADDRESS = "127.0.0.6"
SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "bin" / "kafka"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    """(StackConfig, environment) of the TLS stack, up; its processes' environment is this module's meanwhile."""
    from hft import stack as hft_stack

    top = tmp_path_factory.mktemp("tls-stack")
    kafka, controller, metrics = free_kafka_ports(1)
    redis, sentinel, exporter = free_ports(3)
    (top / "hosts.toml").write_text(textwrap.dedent(f"""
        tls = true
        [stack]
        kafka_port = {kafka}
        kafka_controller_port = {controller}
        kafka_metrics_port = {metrics}
        redis_port = {redis}
        redis_replicas = 2
        redis_sentinel_port = {sentinel}
        redis_exporter_port = {exporter}
        [hosts.a]
        address = "{ADDRESS}"
        services = ["kafka", "redis", "redis-exporter"]
    """))
    base = {k: v for k, v in os.environ.items() if not k.startswith("HFT_") or k == "HFT_REPO_ROOT"}
    env = {**base, "HFT_HOME": str(top / "home"), "HFT_HOSTS_FILE": str(top / "hosts.toml"), "HFT_HOST": "a"}
    with mock.patch.dict(os.environ, env, clear=True):
        config = hft_stack.StackConfig.from_env()
        try:
            hft_stack.up(config, ["kafka", "redis", "redis-exporter"])
            hft_stack.ensure_topics(config.kafka_bootstrap, hft_stack.stream_topics())
            yield config, env
        finally:
            hft_stack.down(config)


def test_kafka_takes_its_clients_over_tls_only(stack):
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    from hft.kafka_conn import client_config

    config, _ = stack
    conf = client_config(config.kafka_bootstrap)
    assert conf["security.protocol"] == "SASL_SSL"
    topic = "market.bars"
    value = f"over-tls-{uuid.uuid4().hex}".encode()
    producer = Producer(client_config(config.kafka_bootstrap, {"acks": "all"}))
    producer.produce(topic, key=b"AAA", value=value, partition=0)
    assert producer.flush(15) == 0
    consumer = Consumer(client_config(config.kafka_bootstrap, {"group.id": f"tls-{uuid.uuid4().hex[:6]}",
                                                               "auto.offset.reset": "earliest"}))
    consumer.subscribe([topic])
    got = []
    try:
        for _ in range(60):
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
            if value in got:
                break
    finally:
        consumer.close()
    assert value in got
    clear = {k: v for k, v in conf.items() if not k.startswith("ssl.")} | {"security.protocol": "SASL_PLAINTEXT"}
    refused = {
        "in clear, with the password": clear,
        "trusting another CA": {**conf, "ssl.ca.pem": tls.new_ca()[0]},
        "over TLS without a login": {k: v for k, v in conf.items() if not k.startswith("sasl.")}
        | {"security.protocol": "SSL"},
        "over TLS with a wrong password": {**conf, "sasl.password": "not-the-password"},
    }
    for why, bad in refused.items():
        with pytest.raises(KafkaException):
            AdminClient({**bad, "log_level": 0, "socket.connection.setup.timeout.ms": 2000}).list_topics(timeout=3)
            pytest.fail(f"Kafka let a client in {why}")


def kafka_api_versions(port: int, context: ssl.SSLContext) -> bytes:
    """An ApiVersions request (v0) over TLS to ``ADDRESS:port``; the answer's first bytes."""
    body = struct.pack(">hhih", 18, 0, 1, 4) + b"test"
    with context.wrap_socket(socket.create_connection((ADDRESS, port), timeout=5), server_hostname=ADDRESS) as s:
        s.sendall(struct.pack(">i", len(body)) + body)
        return s.recv(16)


def test_kafka_controller_listener_takes_only_holders_of_a_stack_certificate(stack):
    config, _ = stack
    port = config.kafka_node_ports(1)[1]
    with socket.create_connection((ADDRESS, port), timeout=5) as s:  # in clear: no Kafka answer
        s.sendall(struct.pack(">i", 14) + struct.pack(">hhih", 18, 0, 1, 4) + b"test")
        try:
            said = s.recv(16)
        except OSError:
            said = b""
        assert len(said) < 8 or struct.unpack(">i", said[4:8])[0] != 1, said
    anonymous = ssl.create_default_context(cadata=tls.ca_pem())
    with pytest.raises((ssl.SSLError, ConnectionError)):
        kafka_api_versions(port, anonymous)
    node = ssl.create_default_context(cadata=tls.ca_pem())
    node.load_cert_chain(config.run_dir / "tls" / "host.pem", config.run_dir / "tls" / "host.key")
    answer = kafka_api_versions(port, node)
    assert len(answer) >= 8 and struct.unpack(">i", answer[4:8])[0] == 1  # the request's correlation id


def test_kafka_cli_tools_log_in_over_tls(stack):
    config, env = stack
    proc = subprocess.run([str(SCRIPT), "topics", "--list"], env=env, capture_output=True, text=True, timeout=120,
                          cwd=config.home)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "market.bars" in proc.stdout.split()


def test_redis_nodes_and_sentinels_take_tls_only(stack):
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    from hft.redis_conn import connect, credentials, wait_replicated

    config, _ = stack
    client = connect(config.redis_url)  # rediss+sentinel: the Sentinels and the master over TLS
    key = f"tls:{uuid.uuid4().hex}"
    client.set(key, "1")
    wait_replicated(client, 2, 2000, "a write over TLS")  # both replicas hold it: replication over TLS
    for node in (2, 3):
        assert connect(config.redis_node_url(node)).get(key) == "1"
    password = credentials(config.redis_url).password
    once = {"socket_timeout": 2, "retry": Retry(NoBackoff(), 0)}  # no retries: each refusal is seen once

    def ping(port: int, **kwargs) -> None:
        redis.Redis(host=ADDRESS, port=port, username="hft", **{"password": password, **once, **kwargs}).ping()

    for port in [config.redis_node_port(n) for n in (1, 2, 3)] + config.redis_sentinels:
        ping(port, ssl=True, ssl_ca_data=tls.ca_pem())  # the stack's CA and password: in
        with pytest.raises(redis.ConnectionError):  # in clear (a timeout is a ConnectionError's kind too)
            ping(port)
        with pytest.raises(redis.ConnectionError):
            ping(port, ssl=True, ssl_ca_data=tls.new_ca()[0])
        with pytest.raises(redis.AuthenticationError):
            ping(port, ssl=True, ssl_ca_data=tls.ca_pem(), password="not-the-password")


def test_redis_cli_and_the_exporter_reach_redis_over_tls(stack):
    import urllib.request

    from hft.redis_conn import cli_login

    config, _ = stack
    args, login_env = cli_login(config.redis_node_url(1))
    cli = shutil.which("redis-cli")
    assert cli
    proc = subprocess.run([cli, "-h", ADDRESS, "-p", str(config.redis_node_port(1)), *args, "PING"],
                          env={**os.environ, **login_env}, capture_output=True, text=True, timeout=30)
    assert proc.stdout.strip() == "PONG", proc.stdout + proc.stderr
    with urllib.request.urlopen(f"http://{ADDRESS}:{config.redis_exporter_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "\nredis_up 1" in metrics
