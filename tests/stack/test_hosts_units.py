"""The hosts file (hft.stack.hosts): one description of which machine runs what, read by every process; its
errors are clear and name the file. No services started here (tests/integration/test_two_hosts.py does)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hft.stack import StackConfig, StackError
from hft.stack.services import _services

TWO_HOSTS = """
    [stack]
    kafka_brokers = 3
    kafka_cluster_id = "q1Sh-9_ISia_zwGINzRvyQ"
    redis_replicas = 1
    spark_workers = 2
    kafka_port = 19092

    [hosts.a]
    address = "127.0.0.2"
    services = ["kafka", "redis", "mlflow", "spark", "monitoring"]

    [hosts.b]
    address = "127.0.0.3"
    services = ["kafka-2", "redis-2", "sentinel-3", "spark-worker-2"]
"""


def from_file(tmp_path: Path, monkeypatch, text: str, host: str | None = None) -> StackConfig:
    path = tmp_path / "hosts.toml"
    path.write_text(textwrap.dedent(text))
    monkeypatch.setenv("HFT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HFT_HOSTS_FILE", str(path))
    for name in ("HFT_KAFKA_PORT", "HFT_KAFKA_BROKERS", "HFT_REDIS_REPLICAS", "HFT_SPARK_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    if host:
        monkeypatch.setenv("HFT_HOST", host)
    else:
        monkeypatch.delenv("HFT_HOST", raising=False)
    return StackConfig.from_env()


def test_a_group_places_every_member_that_no_host_names_alone_and_clients_find_each_at_its_address(
        tmp_path, monkeypatch):
    cfg = from_file(tmp_path, monkeypatch, TWO_HOSTS, host="b")
    where = {name: host.name for name, host in cfg.placement.items()}
    assert {n for n, h in where.items() if h == "b"} == {"kafka-2", "redis-2", "sentinel-3", "spark-worker-2"}
    assert {"kafka", "kafka-3", "redis", "sentinel-1", "sentinel-2", "spark-master", "spark-worker-1", "mlflow",
            "prometheus", "alert-hook"} <= {n for n, h in where.items() if h == "a"}
    assert cfg.kafka_brokers == 3 and cfg.kafka_port == 19092 and cfg.kafka_cluster_id == "q1Sh-9_ISia_zwGINzRvyQ"
    assert cfg.kafka_bootstrap == "127.0.0.2:19092,127.0.0.3:19102,127.0.0.2:19112"
    assert cfg.kafka_quorum == "1@127.0.0.2:9093,2@127.0.0.3:9103,3@127.0.0.2:9113"
    assert cfg.spark_master_url == "spark://127.0.0.2:7077"
    assert cfg.mlflow_uri == "http://127.0.0.2:5000"
    assert cfg.redis_url.startswith("redis+sentinel://hft@127.0.0.2:26379,127.0.0.2:26380,127.0.0.3:26381/")
    assert cfg.redis_node_url(2).startswith("redis://hft@127.0.0.3:6380/0?")
    assert cfg.local_address == "127.0.0.3"
    assert cfg.runs_here("kafka-2") and not cfg.runs_here("kafka")


def test_group_names_match_the_services_the_stack_starts(tmp_path, monkeypatch):
    cfg = from_file(tmp_path, monkeypatch, TWO_HOSTS)
    for group in ("kafka", "redis", "spark", "airflow", "monitoring", "logging", "all"):
        assert tuple(s.name for s in _services(cfg, [group])) == cfg.members(group)


def test_each_service_binds_its_hosts_address(tmp_path, monkeypatch):
    cfg = from_file(tmp_path, monkeypatch, TWO_HOSTS, host="a")
    bound = {s.name: s.host_address for s in _services(cfg, ["all"])}
    assert bound["kafka-2"] == bound["redis-2"] == bound["spark-worker-2"] == "127.0.0.3"
    assert bound["kafka"] == bound["spark-master"] == bound["prometheus"] == "127.0.0.2"


def test_without_a_hosts_file_everything_is_on_loopback(tmp_path, monkeypatch):
    monkeypatch.delenv("HFT_HOSTS_FILE", raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    cfg = StackConfig.from_env()
    assert cfg.hosts is None and cfg.placement == {} and cfg.runs_here("kafka-2")
    assert cfg.address_of("kafka") == cfg.local_address == "127.0.0.1"


@pytest.mark.parametrize("text, words", [
    ("[hosts.a]\naddress = '127.0.0.2'\nservices = ['kafka', 'kafak']\n", "'kafak'"),
    ("[hosts.a]\naddress = '127.0.0.2'\nservices = ['mlflow']\n[hosts.b]\naddress = '127.0.0.3'\n"
     "services = ['mlflow']\n", "mlflow is placed on both a and b"),
    ("[hosts.a]\naddress = '127.0.0.2'\n[hosts.b]\naddress = '127.0.0.2'\n", "the same address"),
    ("[hosts.a]\naddress = '10.1.2.3'\nservices = ['redis']\n", "allow_plaintext = true"),
    ("allow_plaintext = true\n[hosts.a]\naddress = '10.1.2.3'\nservices = ['elasticsearch']\n",
     "elasticsearch has no login of its own"),
    ("[stack]\nkafka_brokers = 2\n[hosts.a]\naddress = '127.0.0.2'\nservices = ['kafka']\n"
     "[hosts.b]\naddress = '127.0.0.3'\nservices = ['kafka-2']\n", "kafka_cluster_id = "),
    ("[stack]\nkafka_brokers = 'three'\n[hosts.a]\naddress = '127.0.0.2'\n", "must be a whole number"),
    ("[stack]\nkafka_borkers = 3\n[hosts.a]\naddress = '127.0.0.2'\n", "unknown setting(s) in [stack]: kafka_borkers"),
    ("[hosts.a]\naddress = 'no spaces allowed'\n", "needs an address"),
    ("[hosts.a\naddress = '127.0.0.2'\n", "is not valid TOML"),
    ("[stack]\nkafka_port = 9092\n", "no [hosts.<name>] table"),
])
def test_a_bad_hosts_file_is_refused_with_what_to_change(tmp_path, monkeypatch, text, words):
    with pytest.raises(StackError, match="hosts.toml") as e:
        from_file(tmp_path, monkeypatch, text)
    assert words in str(e.value)


def test_an_environment_variable_that_contradicts_the_file_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_KAFKA_PORT", "29092")
    path = tmp_path / "hosts.toml"
    path.write_text(textwrap.dedent(TWO_HOSTS))
    monkeypatch.setenv("HFT_HOSTS_FILE", str(path))
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    with pytest.raises(StackError, match="HFT_KAFKA_PORT=29092 but .* says kafka_port = 19092"):
        StackConfig.from_env()


def test_up_needs_to_know_which_host_this_machine_is_and_refuses_services_placed_nowhere(tmp_path, monkeypatch):
    from hft import stack

    cfg = from_file(tmp_path, monkeypatch, TWO_HOSTS)
    with pytest.raises(StackError, match="say which one this machine is with --host or HFT_HOST"):
        stack.up(cfg, ("kafka",))
    cfg = from_file(tmp_path, monkeypatch, TWO_HOSTS, host="b")
    with pytest.raises(StackError, match="places elasticsearch on no host"):
        stack.up(cfg, ("elasticsearch",))
    with pytest.raises(StackError, match="no host 'c'"):
        from_file(tmp_path, monkeypatch, TWO_HOSTS, host="c")


def test_the_example_hosts_file_describes_a_valid_three_machine_deployment(monkeypatch, tmp_path):
    from hft.stack.config import repo_root

    monkeypatch.setenv("HFT_HOSTS_FILE", str(repo_root() / "infra" / "hosts.example.toml"))
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_HOST", "c")
    for name in ("HFT_KAFKA_BROKERS", "HFT_REDIS_REPLICAS", "HFT_SPARK_WORKERS", "HFT_METADATA_DB"):
        monkeypatch.delenv(name, raising=False)
    cfg = StackConfig.from_env()
    assert cfg.kafka_bootstrap == "10.0.0.11:9092,10.0.0.12:9102,10.0.0.13:9112"
    assert {n for n, h in cfg.placement.items() if h.name == "c"} == {"kafka-3", "redis-3", "sentinel-3",
                                                                     "spark-worker-3"}
    assert cfg.local_address == "10.0.0.13" and cfg.address_of("postgres") == "10.0.0.11"
