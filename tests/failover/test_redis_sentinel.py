"""Redis behind three Sentinels with two replicas (``hft stack up --redis-replicas 2``): kill -9 the master while
the streaming job commits predictions and ``hft execute`` decides them. The Sentinels promote a replica, every
client finds it by itself, and nothing acknowledged is lost: every bar predicted once, every prediction decided
once, the executor's positions equal to its fills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import hft_exec
from polling import until
from ports import free_port
from stream_fixtures import Collector, backlog, committed, ready_count, stream_env, stream_stack

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB"]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    from hft import stack

    home = tmp_path_factory.mktemp("sentinel")
    redis_port, sentinel_port = free_port(), free_port()
    while any(p in (redis_port + 1, redis_port + 2) for p in (sentinel_port, sentinel_port + 1, sentinel_port + 2)):
        sentinel_port = free_port()
    env = stream_env(home, HFT_REDIS_REPLICAS="2", HFT_REDIS_PORT=str(redis_port),
                     HFT_REDIS_SENTINEL_PORT=str(sentinel_port), HFT_KAFKA_BROKERS="1")
    with stream_stack(env, TICKERS, stack.orders_topic()) as config:
        yield env, config


def _master(config) -> int | None:
    """The master's port, as the Sentinels say; None while they hold it down and have not promoted another."""
    from redis.sentinel import MasterNotFoundError

    from hft.redis_conn import MASTER_NAME, sentinel

    manager, _ = sentinel(config.redis_url)
    try:
        return int(manager.discover_master(MASTER_NAME)[1])
    except MasterNotFoundError:
        return None


def _only_the_stack_user_gets_in(config) -> None:
    """Every node and Sentinel refuses the anonymous user and a wrong password; their configurations are 0600."""
    import redis

    from hft.redis_conn import USER

    password = config.redis_password_file.read_text().strip()
    ports = [config.redis_node_port(n) for n in (1, 2, 3)] + config.redis_sentinels
    for port in ports:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, socket_timeout=5).ping()
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(host="127.0.0.1", port=port, username=USER, password=password + "x", socket_timeout=5).ping()
        assert redis.Redis(host="127.0.0.1", port=port, username=USER, password=password, socket_timeout=5).ping()
    confs = [config.run_dir / name / "redis.conf" for name in ("redis", "redis-2", "redis-3")]
    confs += [config.run_dir / f"sentinel-{k}" / "sentinel.conf" for k in (1, 2, 3)]
    assert all(c.stat().st_mode & 0o777 == 0o600 for c in confs)


def test_kill_9_of_the_redis_master_mid_stream_loses_nothing_acknowledged(replicated):
    from hft.execution.journal import Journal
    from hft.execution.service import GROUP
    from hft.redis_conn import connect
    from hft.stack.services import Redis
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env, config = replicated
    assert config.redis_url.startswith("redis+sentinel://")
    store = RedisStore.from_url(config.redis_url)
    assert store.replicas_to_ack == 1
    _only_the_stack_user_gets_in(config)
    home = Path(env["HFT_HOME"])
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))
    run_env = {**env, **{f"HFT_EXEC_{k}": "0.5" for k in ("ENTER_LONG", "EXIT_LONG", "ENTER_SHORT", "EXIT_SHORT")}}
    hft = str(Path(sys.executable).with_name("hft"))

    first = 120

    stream = subprocess.Popen(
        [hft, "stream", "--master", "local[2]", "--tickers", ",".join(TICKERS), "--trigger", "500 milliseconds",
         "--max-offsets", "40", "--metrics-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(home / "stream.err", "wb"),  # noqa: SIM115
        start_new_session=True)
    executor = subprocess.Popen(
        [hft, "execute", "--tickers", ",".join(TICKERS), "--replay-clock", "--journal", str(home / "journal"),
         "--metrics-port", "0", "--stop-when-idle", "30"],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collector = Collector(config, messages[first:])
    try:
        collectors.publish(messages[:first], config.kafka_bootstrap)
        until(lambda: committed(store) >= 80, 180, "the stream to commit its first batches")
        collector.start()
        until(lambda: committed(store) >= first + 60, 120, "the stream to keep committing")
        old = _master(config)
        victim = next(Redis(config, n) for n in range(1, 4) if config.redis_node_port(n) == old)
        in_flight = until(lambda: backlog(config, store), 30, "bars in Kafka the stream has not committed")
        os.kill(victim.pid(), signal.SIGKILL)
        killed_at = time.monotonic()
        assert collector.is_alive() and in_flight > 0, "nothing was in flight at the kill"
        new = until(lambda: (m := _master(config)) not in (None, old) and m, 60, "the Sentinels to promote a replica")
        promoted = time.monotonic() - killed_at
        before = committed(store)
        until(lambda: committed(store) > before, 60, "a commit on the new master")
        resumed = time.monotonic() - killed_at
        collector.join(300)
        assert not collector.is_alive() and not collector.errors, collector.errors
        until(lambda: committed(store) == len(messages), 240, "the stream to catch up after the failover")
        assert stream.poll() is None, "the streaming job died in the failover"
        out, err = executor.communicate(timeout=300)
        assert executor.returncode == 0, err[-3000:]
    finally:
        for proc in (stream, executor):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL) if proc is stream else proc.kill()
                proc.wait(30)
    print(f"\nRedis master :{old} killed with {in_flight} bars in flight; :{new} promoted after {promoted:.1f} s, "
          f"the stream committed again after {resumed:.1f} s")

    predictions = store.stream()
    assert len({(e["ticker"], e["bar_ts"]) for e in predictions}) == len(predictions) == ready_count(messages)
    r = connect(config.redis_url)
    group = next(g for g in r.xinfo_groups(store.stream_key) if g["name"] == GROUP)
    assert group["pending"] == 0 and group["lag"] == 0 and group["entries-read"] == len(predictions)
    assert f"executor: {len(predictions)} predictions read" in out
    events = Journal(home / "journal").read()
    names = np.array([hft_exec.EVENT_TYPES.get(int(t), "") for t in events["type"]])
    assert (names == "fill").sum() > 0
    status = subprocess.run([hft, "execute", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr[-2000:]  # the CLI finds the new master too
    positions = r.hgetall("hft:positions")
    assert positions and all(t in status.stdout for t in positions)
