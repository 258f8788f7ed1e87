"""Redis behind three Sentinels with two replicas (``hft stack up --redis-replicas 2``): kill -9 the master while
the streaming job commits predictions and ``hft execute`` decides them. The Sentinels promote a replica, every
client finds it by itself, and nothing acknowledged is lost: every bar predicted once, every prediction decided
once, the executor's positions equal to its fills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import hft_exec
from ports import free_port
from stream_fixtures import ready_count, train_champion

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB"]


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    from hft import stack

    home = tmp_path_factory.mktemp("sentinel")
    redis_port, sentinel_port = free_port(), free_port()
    while any(p in (redis_port + 1, redis_port + 2) for p in (sentinel_port, sentinel_port + 1, sentinel_port + 2)):
        sentinel_port = free_port()
    env = {
        **os.environ, "HFT_HOME": str(home), "HFT_REDIS_REPLICAS": "2", "HFT_REDIS_PORT": str(redis_port),
        "HFT_REDIS_SENTINEL_PORT": str(sentinel_port), "HFT_KAFKA_PORT": str(free_port()),
        "HFT_KAFKA_CONTROLLER_PORT": str(free_port()), "HFT_KAFKA_METRICS_PORT": str(free_port()),
        "HFT_KAFKA_BROKERS": "1", "HFT_MLFLOW_PORT": str(free_port()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "HFT_BARS_PARTITIONS": "2",
    }
    old = dict(os.environ)
    os.environ.update(env)
    config = stack.StackConfig.from_env()
    try:
        stack.up(config, ("kafka", "redis"))
        stack.ensure_topics(config.kafka_bootstrap, {**stack.stream_topics(), **stack.orders_topic()})
        train_champion(home, TICKERS)
        yield env, config
    finally:
        stack.down(config, ("kafka", "redis"))
        os.environ.clear()
        os.environ.update(old)


def _until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _master(config) -> int | None:
    """The master's port, as the Sentinels say; None while they hold it down and have not promoted another."""
    from redis.sentinel import MasterNotFoundError

    from hft.redis_conn import MASTER_NAME, sentinel

    manager, _ = sentinel(config.redis_url)
    try:
        return int(manager.discover_master(MASTER_NAME)[1])
    except MasterNotFoundError:
        return None


def test_kill_9_of_the_redis_master_mid_stream_loses_nothing_acknowledged(replicated):
    from hft.execution.journal import Journal
    from hft.execution.service import GROUP
    from hft.redis_conn import connect
    from hft.stack.services import Redis
    from hft.streaming import collectors
    from hft.streaming.kafka_io import watermarks
    from hft.streaming.store import RedisStore

    env, config = replicated
    assert config.redis_url.startswith("redis+sentinel://")
    store = RedisStore.from_url(config.redis_url)
    assert store.replicas_to_ack == 1
    home = Path(env["HFT_HOME"])
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))
    run_env = {**env, **{f"HFT_EXEC_{k}": "0.5" for k in ("ENTER_LONG", "EXIT_LONG", "ENTER_SHORT", "EXIT_SHORT")}}
    hft = str(Path(sys.executable).with_name("hft"))

    def committed() -> int:
        return sum(o for (t, _), o in store.committed_offsets().items() if t == "market.bars")

    first = 120
    errors: list[Exception] = []

    def collect():
        try:
            for i in range(first, len(messages), 20):
                collectors.publish(messages[i:i + 20], config.kafka_bootstrap)
                time.sleep(0.2)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors.append(e)

    stream = subprocess.Popen(
        [hft, "stream", "--master", "local[2]", "--tickers", ",".join(TICKERS), "--trigger", "500 milliseconds",
         "--max-offsets", "40", "--metrics-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(home / "stream.err", "wb"),  # noqa: SIM115
        start_new_session=True)
    executor = subprocess.Popen(
        [hft, "execute", "--tickers", ",".join(TICKERS), "--replay-clock", "--journal", str(home / "journal"),
         "--metrics-port", "0", "--stop-when-idle", "30"],
        env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    collector = threading.Thread(target=collect, daemon=True)
    try:
        collectors.publish(messages[:first], config.kafka_bootstrap)
        _until(lambda: committed() >= 80, 180, "the stream to commit its first batches")
        collector.start()
        _until(lambda: committed() >= first + 60, 120, "the stream to keep committing")
        old = _master(config)
        victim = next(Redis(config, n) for n in range(1, 4) if config.redis_node_port(n) == old)
        in_flight = _until(lambda: sum(h for _, h in watermarks(config.kafka_bootstrap, "market.bars").values())
                           - committed(), 30, "bars in Kafka the stream has not committed")
        os.kill(victim.pid(), signal.SIGKILL)
        killed_at = time.monotonic()
        assert collector.is_alive() and in_flight > 0, "nothing was in flight at the kill"
        new = _until(lambda: (m := _master(config)) not in (None, old) and m, 60, "the Sentinels to promote a replica")
        promoted = time.monotonic() - killed_at
        before = committed()
        _until(lambda: committed() > before, 60, "a commit on the new master")
        resumed = time.monotonic() - killed_at
        collector.join(300)
        assert not collector.is_alive() and not errors, errors
        _until(lambda: committed() == len(messages), 240, "the stream to catch up after the failover")
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
