"""Executor hot standby with real processes (``hft execute run --ha``) on a real Kafka and Redis: kill -9 of the
leader under heavy order flow, and an old leader paused (SIGSTOP) past its lease and resumed after the takeover.
No order twice, no fill lost, the books equal a run without failure; the paused leader sends nothing."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from itertools import accumulate
from pathlib import Path

import pytest

from exec_fixtures import (
    LOOSE,
    Flow,
    books_equal_a_run_without_failure,
    check_records,
    exec_stack,
    executor,
    kafka_end,
    leader,
    outstanding,
)
from hft.redis_conn import connect
from polling import until

sys.path.insert(0, str(Path(__file__).parents[1] / "execution"))
from test_service import predictions  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB", "CCC", "DDD"]
EXEC_ENV = {f"HFT_EXEC_{k.upper()}": str(v) for k, v in {**LOOSE, "max_fill_qty": 3}.items()}


def books_equal(client, preds, records) -> None:
    books_equal_a_run_without_failure(client, TICKERS, [f for _, f in client.xrange("hft:predictions")], records)


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    yield from exec_stack(tmp_path_factory, "standby", EXEC_ENV)


@pytest.fixture
def client(stack_env):
    _, config = stack_env
    r = connect(config.redis_url)
    r.flushdb()
    yield r
    r.close()


@contextmanager
def trading_pair(env: dict, home: Path, client, preds, published: int):
    """Instance a leading, b standing by, ``preds`` flowing, a past ``published`` journal records; yields
    (a, b, flow); whatever still runs after is killed."""
    a = executor(env, home, "a", TICKERS)
    b = None
    try:
        until(lambda: leader(client).endswith(":a"), 60, "instance a to lead")
        b = executor(env, home, "b", TICKERS)
        flow = Flow(client, preds)
        flow.start()
        until(lambda: int(client.get("hft:exec:published") or 0) > published, 60, "a to be trading")
        yield a, b, flow
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()


def test_kill_9_of_the_leader_under_heavy_order_flow(stack_env, client, tmp_path):
    env, config = stack_env
    preds = predictions(1500, TICKERS, seed=3)
    kafka_start = kafka_end(config)
    with trading_pair(env, tmp_path, client, preds, 1000) as (a, b, flow):
        in_flight = outstanding(client)
        old = leader(client)
        os.kill(a.pid, signal.SIGKILL)
        killed = time.monotonic()
        assert flow.is_alive() and in_flight > 0, "the flow had stopped before the kill"
        published = int(client.get("hft:exec:published") or 0)
        until(lambda: leader(client).endswith(":b"), 30, "b to take the lease", every=0.005)
        took_lease = time.monotonic() - killed
        until(lambda: int(client.get("hft:exec:published") or 0) > published, 30, "b to publish", every=0.005)
        trading = time.monotonic() - killed
        assert int(old.split(":")[0]) < int(leader(client).split(":")[0])
        flow.join(120)
        out, _ = b.communicate(timeout=180)
        assert b.returncode == 0 and "predictions read" in out, out
    records = check_records(client, config, kafka_start)
    fills = [r for r in records if r["type"] == "fill"]
    assert len(fills) > 200, "not a heavy order flow"
    for t in TICKERS:  # positions published across the takeover add up
        mine = [r for r in fills if r["ticker"] == t]
        assert [int(r["position"]) for r in mine] == list(accumulate(int(r["qty"]) for r in mine))
    books_equal(client, preds, records)
    print(f"\nexecutor leader killed with {in_flight} predictions outstanding: the standby held the lease after "
          f"{took_lease:.2f} s and published again after {trading:.2f} s (lease 2 s)")


def test_a_paused_leader_resumed_after_the_takeover_sends_nothing(stack_env, client, tmp_path):
    env, config = stack_env
    home = tmp_path
    preds = predictions(1000, TICKERS, seed=4)
    kafka_start = kafka_end(config)
    with trading_pair(env, home, client, preds, 600) as (a, b, flow):
        os.kill(a.pid, signal.SIGSTOP)
        paused = outstanding(client)
        assert flow.is_alive() and paused > 0, "nothing was in flight at the pause"
        epoch_a = int(leader(client).split(":")[0])
        until(lambda: leader(client).endswith(":b"), 30, "b to take the lease")
        until(lambda: any(int(f.get("epoch", 0)) > epoch_a for _, f in client.xrevrange("hft:orders", count=1)),
              30, "b to publish")
        os.kill(a.pid, signal.SIGCONT)
        until(lambda: b"fenced" in (home / "a.err").read_bytes(), 30, "the resumed leader to find itself fenced")
        flow.join(120)
        out_b, _ = b.communicate(timeout=180)
        out_a, _ = a.communicate(timeout=180)  # a stands by, leads once b stops idle, then stops idle too
        assert a.returncode == b.returncode == 0, (out_a, out_b)
    records = check_records(client, config, kafka_start)
    epochs = [int(r["epoch"]) for r in records]
    first_b = next(k for k, e in enumerate(epochs) if e > epoch_a)
    assert epoch_a not in epochs[first_b:], "the paused leader published after the takeover"
    books_equal(client, preds, records)


def test_after_a_crash_between_kafka_and_redis_each_record_reaches_kafka_once(stack_env, client, tmp_path):
    """The state a crash leaves between a batch's Kafka send and its Redis publication (the cursor behind what
    Kafka holds): the restarted executor publishes the rest to Redis, and to Kafka only what it lacks; a journal
    of another history (a fresh folder) publishes everything from its own cursor."""
    from hft.execution.config import ExecConfig
    from hft.execution.service import ORDERS_TOPIC, ExecutionService
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.store import RedisStore

    _, config = stack_env
    kafka_start = kafka_end(config)
    RedisStore(client).commit(0, [], predictions(100, TICKERS, seed=5))

    def run(folder):
        svc = ExecutionService(client, folder, TICKERS, ExecConfig.from_env(), block_ms=10, replay_clock=True,
                               kafka=TopicSink(config.kafka_bootstrap, ORDERS_TOPIC))
        svc.run(stop_when_idle_s=0.1)
        svc.close()

    run(tmp_path / "j")
    records = [f for _, f in client.xrange("hft:orders")]
    cut = len(records) // 2
    ids = [i for i, _ in client.xrange("hft:orders")][cut:]
    client.xdel("hft:orders", *ids)
    client.set("hft:exec:published", records[cut]["seq"])
    run(tmp_path / "j")
    assert check_records(client, config, kafka_start) == records

    client.flushdb()  # another history: its seqs start again at 0, and the topic's last record is not its own
    kafka_start = kafka_end(config)
    RedisStore(client).commit(0, [], predictions(20, TICKERS, seed=6))
    run(tmp_path / "other")
    assert len(check_records(client, config, kafka_start)) > 0
