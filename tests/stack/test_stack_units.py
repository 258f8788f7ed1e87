"""hft.stack pieces that need no running service: configuration, topic specs, pid files, missing jars."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import quote

import pytest

from hft.stack import (
    ALL_SERVICES,
    StackConfig,
    StackError,
    TopicSpec,
    down,
    hft_spark_jar,
    spark_kafka_jars,
    status,
    up,
)
from hft.stack.config import repo_root


def test_config_defaults_and_addresses(monkeypatch, tmp_path):
    for var in ("HFT_KAFKA_PORT", "HFT_KAFKA_CONTROLLER_PORT", "HFT_REDIS_PORT", "HFT_MLFLOW_PORT", "HFT_KAFKA_HEAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    cfg = StackConfig.from_env()
    assert cfg.run_dir == tmp_path / "home" / "run"
    assert cfg.home == tmp_path / "home"
    assert (cfg.kafka_port, cfg.kafka_controller_port, cfg.redis_port, cfg.mlflow_port) == (9092, 9093, 6379, 5000)
    assert cfg.kafka_heap == "512m"
    assert cfg.kafka_bootstrap == "127.0.0.1:9092"
    secret = tmp_path / "home" / "secrets" / "redis-password"
    assert cfg.redis_url == f"redis://hft@127.0.0.1:6379/0?password_file={quote(str(secret), safe='')}"
    assert cfg.mlflow_uri == "http://127.0.0.1:5000"


def test_config_from_env_ports(monkeypatch, tmp_path):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_KAFKA_PORT", "19092")
    monkeypatch.setenv("HFT_REDIS_PORT", "16379")
    monkeypatch.setenv("HFT_MLFLOW_PORT", "15000")
    cfg = StackConfig.from_env()
    assert cfg.kafka_bootstrap == "127.0.0.1:19092"
    assert cfg.redis_url.startswith("redis://hft@127.0.0.1:16379/0?password_file=")
    assert cfg.mlflow_uri == "http://127.0.0.1:15000"
    monkeypatch.setenv("HFT_REDIS_PORT", "redis")
    with pytest.raises(StackError, match="HFT_REDIS_PORT"):
        StackConfig.from_env()


def test_config_relative_run_dir_is_made_absolute_and_home_defaults_to_its_parent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = StackConfig(run_dir=Path("var/run"))
    assert cfg.run_dir == tmp_path / "var" / "run"
    assert cfg.home == tmp_path / "var"
    with pytest.raises(StackError, match="share a port"):
        StackConfig(run_dir=tmp_path, kafka_port=7000, redis_port=7000)


def test_topic_spec_validation():
    spec = TopicSpec(partitions=3, retention_ms=60_000)
    assert spec.cleanup_policy == "delete"
    assert spec.configs() == {"retention.ms": "60000", "cleanup.policy": "delete"}
    assert TopicSpec(1, -1, "compact").configs()["retention.ms"] == "-1"
    for bad in (dict(partitions=0, retention_ms=1), dict(partitions=1, retention_ms=0),
                dict(partitions=1, retention_ms=1, cleanup_policy="keep")):
        with pytest.raises(ValueError):
            TopicSpec(**bad)


def test_repo_root_is_the_checkout():
    assert (repo_root() / "infra" / "setup.sh").is_file()
    assert (repo_root() / "src" / "hft" / "stack" / "__init__.py").is_file()



def test_unknown_service(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3, mlflow_port=4)
    with pytest.raises(StackError, match="unknown service.*zookeeper"):
        up(cfg, ["zookeeper"])
    with pytest.raises(StackError, match="unknown service"):
        down(cfg, ["zookeeper"])


def test_stale_pid_file_is_ignored_and_removed(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3, mlflow_port=4)
    cfg.run_dir.mkdir(parents=True)
    # This test's own pid: alive, but not a redis-server (a reused pid).
    (cfg.run_dir / "redis.pid").write_text(f"{os.getpid()}\n")
    (cfg.run_dir / "kafka.pid").write_text("not a pid\n")
    st = status(cfg)
    assert set(st) == set(ALL_SERVICES) - {"spark"}  # no Spark cluster (workers) in this configuration
    assert not st["redis"].running and st["redis"].pid is None
    assert not (cfg.run_dir / "redis.pid").exists()
    assert down(cfg) == dict.fromkeys(set(ALL_SERVICES) - {"spark"}, "not running")


def test_missing_jars_say_make_setup(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_REPO_ROOT", str(tmp_path / "bare-checkout"))
    cfg = StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3, mlflow_port=4)
    with pytest.raises(StackError, match=r"Kafka jars not found in .*build/kafka-libs: run `make setup`"):
        up(cfg, ["kafka"])
    assert not (cfg.run_dir / "kafka.pid").exists()
    with pytest.raises(StackError, match=r"build/spark-jars .*run `make setup`"):
        spark_kafka_jars()
    with pytest.raises(StackError, match=r"build/hft-spark/hft-spark.jar not found .*run `make setup`"):
        hft_spark_jar()


def test_spark_kafka_jars_are_the_connector_and_its_dependencies():
    jars = spark_kafka_jars()
    names = [Path(j).name for j in jars]
    assert all(Path(j).is_absolute() and Path(j).is_file() for j in jars)
    for prefix in ("spark-sql-kafka-0-10_2.13-4.2.0", "spark-token-provider-kafka-0-10_2.13-4.2.0",
                   "kafka-clients-", "commons-pool2-"):
        assert any(n.startswith(prefix) for n in names), names
    # pyspark ships everything else: a second Scala/slf4j/lz4 on the classpath would only conflict.
    assert len(jars) == 4, names


def test_missing_mlflow_binary_says_make_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "nowhere" / "python"))
    cfg = StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3, mlflow_port=4)
    with pytest.raises(StackError, match="make setup"):
        up(cfg, ["mlflow"])


def test_ui_password_web_config_is_a_bcrypt_hash_kept_until_the_password_changes(tmp_path, monkeypatch):
    import os
    import stat

    import bcrypt

    from hft.stack import StackConfig
    from hft.stack.monitoring import ui_credentials, write_web_config

    monkeypatch.delenv("HFT_PROMETHEUS_PASSWORD", raising=False)
    cfg = StackConfig(run_dir=tmp_path / "run")
    user, password = ui_credentials(cfg)
    assert user == "hft" and len(password) >= 24
    assert stat.S_IMODE(os.stat(tmp_path / "secrets" / "prometheus-password").st_mode) == 0o600
    assert ui_credentials(cfg) == (user, password)  # generated once
    web, secret_file = write_web_config(tmp_path, cfg)
    text = web.read_text()
    hashed = text.split("'")[1]
    assert password not in text and bcrypt.checkpw(password.encode(), hashed.encode())
    assert secret_file.read_text() == password and stat.S_IMODE(os.stat(web).st_mode) == 0o600
    write_web_config(tmp_path, cfg)
    assert web.read_text() == text  # same password: same hash (no rehash per start)
    monkeypatch.setenv("HFT_PROMETHEUS_PASSWORD", "another one")
    write_web_config(tmp_path, cfg)
    assert bcrypt.checkpw(b"another one", web.read_text().split("'")[1].encode())


def test_kafka_cluster_ports_bootstrap_and_quorum(tmp_path, monkeypatch):
    monkeypatch.delenv("HFT_KAFKA_BROKERS", raising=False)
    cfg = StackConfig(run_dir=tmp_path / "run", kafka_brokers=3)
    assert [cfg.kafka_node_ports(n) for n in (1, 2, 3)] == [(9092, 9093, 9404), (9102, 9103, 9414), (9112, 9113, 9424)]
    assert cfg.kafka_bootstrap == "127.0.0.1:9092,127.0.0.1:9102,127.0.0.1:9112"
    assert cfg.kafka_quorum == "1@127.0.0.1:9093,2@127.0.0.1:9103,3@127.0.0.1:9113"
    # node 2's controller port is node 1's client port + 11: a collision is refused, naming the node
    with pytest.raises(StackError, match="share a port"):
        StackConfig(run_dir=tmp_path / "run", kafka_brokers=2, kafka_controller_port=9102)
    for bad in (0, 6):
        with pytest.raises(StackError, match="HFT_KAFKA_BROKERS"):
            StackConfig(run_dir=tmp_path / "run", kafka_brokers=bad)
    monkeypatch.setenv("HFT_KAFKA_BROKERS", "three")
    with pytest.raises(StackError, match="HFT_KAFKA_BROKERS"):
        StackConfig.from_env()


def test_clients_find_the_cluster_size_the_stack_formatted(tmp_path, monkeypatch):
    monkeypatch.delenv("HFT_KAFKA_BROKERS", raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    assert StackConfig.from_env().kafka_brokers == 1
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "kafka-cluster.json").write_text('{"cluster_id": "x", "brokers": 3}\n')
    assert StackConfig.from_env().kafka_brokers == 3
    monkeypatch.setenv("HFT_KAFKA_BROKERS", "1")  # the environment wins, and the stack refuses the mismatch
    cfg = StackConfig.from_env()
    from hft.stack.services import _services

    (kafka,) = _services(cfg, ["kafka"])
    with pytest.raises(StackError, match="cluster of 3 broker"):
        kafka.check()


def test_kafka_stands_for_every_node_and_kafka_n_for_one(tmp_path):
    from hft.stack.services import _services

    cfg = StackConfig(run_dir=tmp_path / "run", kafka_brokers=3)
    assert [s.name for s in _services(cfg, ["kafka", "redis"])] == ["kafka", "kafka-2", "kafka-3", "redis"]
    assert [s.name for s in _services(cfg, ["kafka-3"])] == ["kafka-3"]
    assert [s.name for s in _services(cfg, ["all"])][:3] == ["kafka", "kafka-2", "kafka-3"]
    with pytest.raises(StackError, match="kafka-4"):
        _services(cfg, ["kafka-4"])
    assert TopicSpec(partitions=2, retention_ms=1).replication_factor == -1  # the cluster's default


def test_a_process_whose_main_thread_exited_is_alive_until_its_last_thread_exits():
    """A JVM stopping loses its main thread first: the leader shows as a zombie while other threads still hold
    its sockets (``down`` returned, and the next ``up`` found the Kafka metrics port taken, in CI)."""
    import subprocess
    import time

    from hft.stack.process import alive

    code = ("import ctypes, os, threading, time\n"
            "threading.Thread(target=lambda: (time.sleep(1.5), os._exit(0))).start()\n"
            "ctypes.CDLL(None, use_errno=True).syscall(60, 0)\n")  # SYS_exit: ends the calling thread only
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z":  # the leader is a zombie
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert alive(child.pid)  # ... and its other thread still runs
        deadline = time.monotonic() + 10
        while alive(child.pid):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert child.poll() == 0
    finally:
        child.kill()
        child.wait()
