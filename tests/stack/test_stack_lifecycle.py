"""Stopping and restarting the stack, and the ways `up` refuses or fails with a clear StackError."""

from __future__ import annotations

import socket
import time

import pytest

from hft.stack import ALL_SERVICES, StackError, TopicSpec, down, ensure_topics, status, up
from hft.stack.process import alive, port_in_use, read_pid

pytestmark = pytest.mark.integration


@pytest.fixture
def config(tmp_path, make_stack_config):
    cfg = make_stack_config(tmp_path)
    yield cfg
    down(cfg)  # even when the test failed half-way


def test_down_stops_everything_and_up_again_keeps_the_data(config):
    import redis
    from confluent_kafka.admin import AdminClient

    up(config, ["kafka", "redis"])
    pids = {n: read_pid(config.run_dir / f"{n}.pid") for n in ("kafka", "redis")}
    assert ensure_topics(config.kafka_bootstrap, {"bars": TopicSpec(2, 86_400_000)}) == {"bars": "created"}
    client = redis.Redis.from_url(config.redis_url)
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
    for port in (config.kafka_port, config.kafka_controller_port, config.redis_port):
        assert not port_in_use(port), port
    assert not any(s.running or s.healthy for s in status(config).values())
    assert down(config) == dict.fromkeys(ALL_SERVICES, "not running")

    # Second start: the storage is not formatted again, topics and keys survive (AOF).
    again = up(config, ["kafka", "redis"])
    assert all(v.startswith("started") for v in again.values()), again
    assert "bars" in AdminClient({"bootstrap.servers": config.kafka_bootstrap}).list_topics(timeout=10).topics
    assert ensure_topics(config.kafka_bootstrap, {"bars": TopicSpec(2, 86_400_000)}) == {"bars": "exists"}
    client = redis.Redis.from_url(config.redis_url)
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
    template.write_text("bind 127.0.0.1\nport ${port}\ndir ${dir}\nnot-a-redis-directive yes\n")
    monkeypatch.setenv("HFT_REPO_ROOT", str(tmp_path / "checkout"))
    with pytest.raises(StackError) as err:
        up(config, ["redis"])
    msg = str(err.value)
    assert "redis exited while starting" in msg
    assert "not-a-redis-directive" in msg  # Redis's own complaint, from the end of redis.log
    assert not (config.run_dir / "redis.pid").exists()
    assert not status(config)["redis"].running
