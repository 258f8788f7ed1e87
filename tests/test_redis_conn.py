"""Redis URLs: one server, or a master found through Sentinels (hft.redis_conn)."""

from __future__ import annotations

import pytest

from hft.redis_conn import RedisUrlError, SentinelUrl, connect, parse_sentinel_url, replicas_to_ack
from hft.stack import StackConfig, StackError


def test_sentinel_url_round_trip_and_defaults():
    url = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380,127.0.0.1:26381/hft/2"
    parsed = parse_sentinel_url(url)
    assert parsed == SentinelUrl((("127.0.0.1", 26379), ("127.0.0.1", 26380), ("127.0.0.1", 26381)), "hft", 2)
    assert str(parsed) == url
    assert parse_sentinel_url("redis+sentinel://h:1/m").db == 0
    assert replicas_to_ack(url) == 1 and replicas_to_ack("redis://127.0.0.1:6379/0") == 0


@pytest.mark.parametrize("bad", ["redis://h:1/0", "redis+sentinel://h/m", "redis+sentinel://h:99999/m",
                                 "redis+sentinel://h:1", "redis+sentinel://h:1/m/x", "redis+sentinel://h:1/m/0/1",
                                 "redis+sentinel://:1/m"])
def test_bad_sentinel_urls_say_why(bad):
    with pytest.raises(RedisUrlError):
        parse_sentinel_url(bad)


def test_clients_of_a_replicated_stack_go_through_the_sentinels(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", redis_replicas=2, redis_port=7000, redis_sentinel_port=27000)
    assert cfg.redis_url == "redis+sentinel://127.0.0.1:27000,127.0.0.1:27001,127.0.0.1:27002/hft/0"
    assert cfg.redis_node_url(3) == "redis://127.0.0.1:7002/0"
    client = connect(cfg.redis_url)  # nothing is dialled until a command
    assert type(client.connection_pool).__name__ == "SentinelConnectionPool"
    assert StackConfig(run_dir=tmp_path / "run").redis_url == "redis://127.0.0.1:6379/0"
    with pytest.raises(StackError, match="share a port"):  # replica 1 on 7001 = the second Sentinel
        StackConfig(run_dir=tmp_path / "run", redis_replicas=2, redis_port=7000, redis_sentinel_port=7001)
    with pytest.raises(StackError, match="HFT_REDIS_REPLICAS"):
        StackConfig(run_dir=tmp_path / "run", redis_replicas=9)


def test_redis_stands_for_the_master_its_replicas_and_the_sentinels(tmp_path, monkeypatch):
    from hft.stack.services import _services

    cfg = StackConfig(run_dir=tmp_path / "run", redis_replicas=2)
    assert [s.name for s in _services(cfg, ["redis"])] == ["redis", "redis-2", "redis-3", "sentinel-1", "sentinel-2",
                                                           "sentinel-3"]
    assert [s.name for s in _services(cfg, ["sentinel-2"])] == ["sentinel-2"]
    # clients started later find the replicated stack by themselves
    monkeypatch.delenv("HFT_REDIS_REPLICAS", raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    assert StackConfig.from_env().redis_replicas == 0
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "redis-replication.json").write_text('{"replicas": 2}\n')
    assert StackConfig.from_env().redis_url.startswith("redis+sentinel://")
