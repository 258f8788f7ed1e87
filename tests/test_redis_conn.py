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


def test_the_password_comes_from_the_environment_or_the_named_file_never_from_a_guess(tmp_path, monkeypatch):
    from hft.redis_conn import PASSWORD_ENV, cli_login, credentials, redacted

    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    secret = tmp_path / "pw"
    secret.write_text("s3cret-from-file\n")
    url = f"redis://hft@127.0.0.1:7000/2?password_file={secret}"
    assert credentials(url).kwargs() == {"username": "hft", "password": "s3cret-from-file"}
    assert "s3cret" not in repr(credentials(url))
    assert credentials("redis://127.0.0.1:7000/0").kwargs() == {}  # no user named: the anonymous one
    client = connect(url)
    kwargs = client.connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"], kwargs["db"], kwargs["port"]) == ("hft", "s3cret-from-file", 2, 7000)
    assert "password_file" not in kwargs
    assert cli_login(url) == (["--user", "hft"], {"REDISCLI_AUTH": "s3cret-from-file"})
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env")  # the environment wins: the stack's servers use it too
    assert credentials(url).password == "from-the-env"
    assert credentials("redis://hft:in-url@h:1/0").password == "in-url"
    assert redacted("redis://hft:in-url@h:1/0") == "redis://hft:***@h:1/0"
    monkeypatch.delenv(PASSWORD_ENV)
    with pytest.raises(RedisUrlError, match="needs a password: set HFT_REDIS_PASSWORD"):
        credentials("redis://hft@127.0.0.1:7000/0")
    with pytest.raises(RedisUrlError, match="cannot read the password"):
        credentials(f"redis://hft@127.0.0.1:7000/0?password_file={tmp_path / 'missing'}")
    sentinel_url = f"redis+sentinel://hft@127.0.0.1:1,127.0.0.1:2/hft/3?password_file={secret}"
    assert parse_sentinel_url(sentinel_url) == SentinelUrl((("127.0.0.1", 1), ("127.0.0.1", 2)), "hft", 3)
    assert credentials(sentinel_url).password == "s3cret-from-file"


@pytest.mark.parametrize("bad", ["redis://h:1/0", "redis+sentinel://h/m", "redis+sentinel://h:99999/m",
                                 "redis+sentinel://h:1", "redis+sentinel://h:1/m/x", "redis+sentinel://h:1/m/0/1",
                                 "redis+sentinel://:1/m"])
def test_bad_sentinel_urls_say_why(bad):
    with pytest.raises(RedisUrlError):
        parse_sentinel_url(bad)


def test_clients_of_a_replicated_stack_go_through_the_sentinels(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", redis_replicas=2, redis_port=7000, redis_sentinel_port=27000)
    secret = tmp_path / "secrets" / "redis-password"
    query = "password_file=" + str(secret).replace("/", "%2F")
    assert cfg.redis_url == f"redis+sentinel://hft@127.0.0.1:27000,127.0.0.1:27001,127.0.0.1:27002/hft/0?{query}"
    assert cfg.redis_node_url(3) == f"redis://hft@127.0.0.1:7002/0?{query}"
    secret.parent.mkdir()
    secret.write_text("from-the-file\n")
    client = connect(cfg.redis_url)  # nothing is dialled until a command
    assert type(client.connection_pool).__name__ == "SentinelConnectionPool"
    assert client.connection_pool.connection_kwargs["password"] == "from-the-file"
    assert StackConfig(run_dir=tmp_path / "run").redis_url == f"redis://hft@127.0.0.1:6379/0?{query}"
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
