"""Executor hot standby with real processes (``hft execute run --ha``) on a real Kafka and Redis: kill -9 of the
leader under heavy order flow, and an old leader paused (SIGSTOP) past its lease and resumed after the takeover.
No order twice, no fill lost, the books equal a run without failure; the paused leader sends nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from polling import until
from stream_fixtures import stream_env

sys.path.insert(0, str(Path(__file__).parents[1] / "execution"))
from test_service import LOOSE, predictions  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB", "CCC", "DDD"]
EXEC_ENV = {f"HFT_EXEC_{k.upper()}": str(v) for k, v in {**LOOSE, "max_fill_qty": 3}.items()}


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    from hft import stack

    home = tmp_path_factory.mktemp("standby")
    env = {**stream_env(home), **EXEC_ENV}
    old = dict(os.environ)
    os.environ.update(env)
    config = stack.StackConfig.from_env()
    try:
        stack.up(config, ("kafka", "redis"))
        stack.ensure_topics(config.kafka_bootstrap, stack.orders_topic())
        yield env, config
    finally:
        stack.down(config, ("kafka", "redis"))
        os.environ.clear()
        os.environ.update(old)


@pytest.fixture
def client(stack_env):
    _, config = stack_env
    r = redis.Redis.from_url(config.redis_url, decode_responses=True)
    r.flushdb()
    yield r
    r.close()


def executor(env: dict, home: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("hft")), "execute", "run", "--ha", "--instance", name, "--journal",
         str(home / f"journal-{name}"), "--tickers", ",".join(TICKERS), "--batch", "20", "--replay-clock",
         "--metrics-port", "0", "--stop-when-idle", "3"],
        env=env, stdout=subprocess.PIPE, stderr=open(home / f"{name}.err", "wb"), text=True)  # noqa: SIM115


class Flow(threading.Thread):
    """Writes ``preds`` to the predictions stream in batches of ``size`` every ``pause`` s, as the stream does."""

    def __init__(self, client, preds, size: int = 40, pause: float = 0.02):
        super().__init__(daemon=True)
        self.client, self.preds, self.size, self.pause = client, preds, size, pause

    def run(self) -> None:
        from hft.streaming.store import RedisStore

        store = RedisStore(self.client)
        for k in range(0, len(self.preds), self.size):
            store.commit(k, [], self.preds[k:k + self.size])
            time.sleep(self.pause)


def leader(client) -> str:
    return client.get("hft:exec:leader") or ""


def outstanding(client) -> int:
    """Predictions not yet decided: pending (read, not acknowledged) or not yet delivered."""
    group = next(g for g in client.xinfo_groups("hft:predictions") if g["name"] == "executor")
    return int(group["pending"]) + int(group["lag"] or 0)


def kafka_end(config) -> int:
    from hft.streaming.kafka_io import watermarks

    return watermarks(config.kafka_bootstrap, "orders")[0][1]


def kafka_orders(config, start: int) -> list[dict]:
    """The committed records of Kafka ``orders`` from offset ``start`` (read_committed: an aborted transaction's
    are not seen)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": config.kafka_bootstrap, "group.id": f"check-{time.time_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})
    c.assign([TopicPartition("orders", 0, start)])
    out, idle = [], 0
    while idle < 5:
        msgs = c.consume(500, timeout=1.0)
        idle = 0 if msgs else idle + 1
        out += [json.loads(m.value()) for m in msgs if m.error() is None]
    c.close()
    return out


def books_equal_a_run_without_failure(client, preds, records) -> None:
    """The same predictions through one executor that never fails (another key prefix, same Redis)."""
    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService
    from hft.streaming.store import RedisStore

    RedisStore(client, prefix="clean").commit(0, [], preds)
    clean_dir = Path(os.environ["HFT_HOME"]) / f"clean-{time.time_ns()}"
    clean = ExecutionService(client, clean_dir, TICKERS, ExecConfig.from_env(), prefix="clean", block_ms=10,
                             replay_clock=True)
    clean.run(stop_when_idle_s=0.1)
    clean.close()
    for i, t in enumerate(TICKERS):
        assert int(client.hget("hft:positions", t)) == clean.executor.position(i), t
    state = client.hgetall("hft:exec:state")
    assert float(state["cash"]) == clean.executor.cash / 1e4 or abs(float(state["cash"]) - clean.executor.cash / 1e4) < 1e-6
    mine = [(r["type"], r["ticker"], r["order_id"], r["qty"], r["price"]) for r in records]
    theirs = [(r["type"], r["ticker"], r["order_id"], r["qty"], r["price"]) for _, r in client.xrange("clean:orders")]
    assert mine == theirs, "the pair decided other orders or fills than one executor would"
    client.delete(*client.keys("clean:*"))


def check_records(client, config, kafka_start: int) -> list[dict]:
    """Redis ``orders`` and Kafka ``orders`` (from ``kafka_start``): every journal record once, in order, the same
    in both."""
    records = [f for _, f in client.xrange("hft:orders")]
    seqs = [int(r["seq"]) for r in records]
    assert seqs == sorted(set(seqs)), "a journal record was published twice or out of order"
    sent = [int(r["order_id"]) for r in records if r["type"] == "order_sent"]
    assert sent == sorted(set(sent)), "an order was sent twice"
    in_kafka = kafka_orders(config, kafka_start)
    assert [r["seq"] for r in in_kafka] == seqs, "Kafka's committed orders differ from Redis's"
    for mine, theirs in zip(records, in_kafka):
        assert {k: str(v) for k, v in theirs.items() if k != "epoch"} == {k: v for k, v in mine.items() if k != "epoch"}
    return records


def test_kill_9_of_the_leader_under_heavy_order_flow(stack_env, client, tmp_path):
    env, config = stack_env
    home = tmp_path  # the instances' journals and logs
    preds = predictions(1500, TICKERS, seed=3)
    flow = Flow(client, preds)
    kafka_start = kafka_end(config)
    a = executor(env, home, "a")
    until(lambda: leader(client).endswith(":a"), 60, "instance a to lead")
    b = executor(env, home, "b")
    try:
        flow.start()
        until(lambda: int(client.get("hft:exec:published") or 0) > 1000, 60, "a to be trading")
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
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.kill()
    records = check_records(client, config, kafka_start)
    fills = [r for r in records if r["type"] == "fill"]
    assert len(fills) > 200, "not a heavy order flow"
    for t in TICKERS:  # positions published across the takeover add up
        mine = [r for r in fills if r["ticker"] == t]
        assert [int(r["position"]) for r in mine] == list(__import__("itertools").accumulate(int(r["qty"]) for r in mine))
    books_equal_a_run_without_failure(client, preds, records)
    print(f"\nexecutor leader killed with {in_flight} predictions outstanding: the standby held the lease after "
          f"{took_lease:.2f} s and published again after {trading:.2f} s (lease 2 s)")


def test_a_paused_leader_resumed_after_the_takeover_sends_nothing(stack_env, client, tmp_path):
    env, config = stack_env
    home = tmp_path
    preds = predictions(1000, TICKERS, seed=4)
    flow = Flow(client, preds)
    kafka_start = kafka_end(config)
    a = executor(env, home, "a")
    until(lambda: leader(client).endswith(":a"), 60, "instance a to lead")
    b = executor(env, home, "b")
    try:
        flow.start()
        until(lambda: int(client.get("hft:exec:published") or 0) > 600, 60, "a to be trading")
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
    finally:
        for p in (a, b):
            if p.poll() is None:
                os.kill(p.pid, signal.SIGCONT)
                p.kill()
    records = check_records(client, config, kafka_start)
    epochs = [int(r["epoch"]) for r in records]
    first_b = next(k for k, e in enumerate(epochs) if e > epoch_a)
    assert epoch_a not in epochs[first_b:], "the paused leader published after the takeover"
    books_equal_a_run_without_failure(client, preds, records)


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
