"""The game day: the whole redundant stack (three Kafka brokers, Redis with two replicas and three Sentinels, the
supervised streaming job, two executors as a hot-standby pair) under a steady flow of bars, and, in turn, kill -9
of the Kafka leader of a bars partition, of the Redis master, of the executor leader and of the stream's driver,
each after the system recovered from the previous. Then the books: every bar predicted once, every prediction
decided once, every order and fill once in Redis and Kafka, positions and cash equal to a run without failure.
The timings (each takeover, the longest gap in predictions and in orders) are printed; the README quotes them."""

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
from exec_fixtures import LOOSE, books_equal_a_run_without_failure, check_records, executor, kafka_end, leader
from polling import until
from ports import free_kafka_ports, free_port
from stream_fixtures import Collector, committed, driver_of, ready_count, stream_env, stream_stack

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB"]
# every decision trades (the small test model's probabilities hover near 0.5); limits that never bind
EXEC_ENV = {**{f"HFT_EXEC_{k}": "0.5" for k in ("ENTER_LONG", "EXIT_LONG", "ENTER_SHORT", "EXIT_SHORT")},
            **{f"HFT_EXEC_{k.upper()}": str(v) for k, v in LOOSE.items()}}


@pytest.fixture(scope="module")
def redundant(tmp_path_factory):
    from hft import stack

    home = tmp_path_factory.mktemp("gameday")
    kafka, controller, metrics = free_kafka_ports(3)
    redis_port, sentinel_port = free_port(), free_port()
    while any(p in (redis_port + 1, redis_port + 2) for p in (sentinel_port, sentinel_port + 1, sentinel_port + 2)):
        sentinel_port = free_port()
    env = stream_env(home, HFT_KAFKA_BROKERS="3", HFT_KAFKA_PORT=str(kafka), HFT_KAFKA_CONTROLLER_PORT=str(controller),
                     HFT_KAFKA_METRICS_PORT=str(metrics), HFT_KAFKA_HEAP="384m", HFT_REDIS_REPLICAS="2",
                     HFT_REDIS_PORT=str(redis_port), HFT_REDIS_SENTINEL_PORT=str(sentinel_port), **EXEC_ENV)
    with stream_stack(env, TICKERS, stack.orders_topic()) as config:
        yield env, config


def _gaps(ids: list[str], since_ms: int) -> float:
    """The longest time (s) between consecutive Redis stream entries (their ids' milliseconds) after ``since_ms``."""
    ms = np.array([int(i.split("-")[0]) for i in ids], dtype=np.int64)
    ms = ms[ms >= since_ms]
    return float(np.diff(ms).max()) / 1000 if len(ms) > 1 else 0.0


def test_game_day_kill_kafka_leader_redis_master_executor_leader_and_stream_driver(redundant):
    from hft.redis_conn import connect, master_address
    from hft.stack.kafka import admin_client
    from hft.stack.services import Kafka, Redis
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env, config = redundant
    home = Path(env["HFT_HOME"])
    r = connect(config.redis_url)
    store = RedisStore.from_url(config.redis_url)
    hft = str(Path(sys.executable).with_name("hft"))
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 12))  # two sessions, 1560 bars
    kafka_start = kafka_end(config)

    def orders_published() -> int:
        return int(r.get("hft:exec:published") or 0)

    def recovered(progress, what: str, timeout: float = 90) -> float:
        """Seconds from now until ``progress()`` moves past its value now."""
        t0, before = time.monotonic(), progress()
        until(lambda: progress() > before, timeout, what, every=0.05)
        return time.monotonic() - t0

    supervisor = subprocess.Popen(
        [hft, "stream", "--supervise", "--master", "local[2]", "--tickers", ",".join(TICKERS), "--trigger",
         "500 milliseconds", "--max-offsets", "40", "--metrics-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(home / "stream.err", "wb"),  # noqa: SIM115
        start_new_session=True)
    executors = {name: executor(env, home, name, TICKERS, idle_s=0) for name in ("a", "b")}
    collector = Collector(config, messages, size=6, pause=0.25)  # a steady flow that outlasts the game
    timings: dict[str, float] = {}
    try:
        until(lambda: leader(r), 60, "an executor to lead")
        until(lambda: store.running(), 180, "the streaming job to start")
        started_ms = int(time.time() * 1000)
        flow_t0 = time.monotonic()
        collector.start()
        until(lambda: orders_published() > 50, 180, "orders to flow")

        # 1. the Kafka leader of bars partition 0
        md = admin_client(config.kafka_bootstrap).list_topics("market.bars", timeout=10)
        node = md.topics["market.bars"].partitions[0].leader
        os.kill(Kafka(config, node).pid(), signal.SIGKILL)
        t0 = time.monotonic()
        until(lambda: admin_client(config.kafka_bootstrap).list_topics("market.bars", timeout=10)
              .topics["market.bars"].partitions[0].leader not in (-1, node), 60, "a new Kafka leader", every=0.1)
        timings["Kafka partition leader elected"] = time.monotonic() - t0
        timings["Kafka: predictions again"] = timings["Kafka partition leader elected"] + recovered(
            lambda: committed(store), "the stream to commit after the Kafka failover")

        # 2. the Redis master
        host, port = master_address(config.redis_url)
        victim = next(Redis(config, n) for n in range(1, 4) if config.redis_node_port(n) == port)
        os.kill(victim.pid(), signal.SIGKILL)
        t0 = time.monotonic()
        until(lambda: _new_master(config, port), 60, "the Sentinels to promote a replica", every=0.1)
        timings["Redis replica promoted"] = time.monotonic() - t0
        timings["Redis: predictions again"] = timings["Redis replica promoted"] + recovered(
            lambda: committed(store), "the stream to commit on the new master")
        timings["Redis: orders again"] = time.monotonic() - t0 + recovered(orders_published, "orders on the new master")

        # 3. the executor leader (whichever leads now: a Redis failover may have moved the lease)
        old = leader(r)
        name = old.split(":", 1)[1]
        dead = [n for n, proc in executors.items() if proc.poll() is not None]
        assert not dead, f"executor(s) {dead} died in the failovers before (see {home}/<name>.err): no standby left"
        os.kill(executors[name].pid, signal.SIGKILL)
        t0 = time.monotonic()
        until(lambda: leader(r) not in ("", old), 30, "the standby to take the lease", every=0.01)
        timings["executor standby holds the lease"] = time.monotonic() - t0
        timings["executor: orders again"] = timings["executor standby holds the lease"] + recovered(
            orders_published, "the new executor leader to publish")

        # 4. the stream's driver (the supervisor restarts it from its checkpoint)
        driver = driver_of(supervisor.pid)
        assert driver is not None
        assert collector.is_alive(), "the flow ended before the last kill"
        os.killpg(driver, signal.SIGKILL)
        t0 = time.monotonic()
        until(lambda: driver_of(supervisor.pid) not in (None, driver), 60, "the supervisor to restart the driver")
        timings["stream driver: predictions again"] = time.monotonic() - t0 + recovered(
            lambda: committed(store), "the restarted driver's first commit", timeout=180)

        collector.join(600)
        assert not collector.errors and collector.failed == 0, collector.errors
        assert collector.acked == len(messages), "a bar was not acknowledged by Kafka"
        until(lambda: committed(store) == len(messages), 300, "the stream to predict every bar")
        group = lambda: next(g for g in r.xinfo_groups("hft:predictions") if g["name"] == "executor")  # noqa: E731
        until(lambda: group()["lag"] == 0 and group()["pending"] == 0, 120, "the executor to decide every prediction")
        final = leader(r).split(":", 1)[1]
        timings["the flow (bars/s)"] = len(messages) / (time.monotonic() - flow_t0)
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        for proc in executors.values():
            if proc.poll() is None:
                proc.terminate()
        try:
            supervisor.wait(60)
        finally:
            if (d := driver_of(supervisor.pid)) is not None:
                os.killpg(d, signal.SIGKILL)
        for proc in executors.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()

    timings["longest gap in predictions"] = _gaps([i for i, _ in r.xrange("hft:predictions")], started_ms)
    timings["longest gap in orders"] = _gaps([i for i, _ in r.xrange("hft:orders")], started_ms)
    print("\ngame day (kill -9 each, in turn, while bars flow):")
    for what, s in timings.items():
        print(f"  {what:<40}{s:6.2f}" + ("" if "bars/s" in what else " s"))

    # every bar predicted once
    predictions = store.stream()
    assert len({(e["ticker"], e["bar_ts"]) for e in predictions}) == len(predictions) == ready_count(messages)
    # every prediction decided once: the group read each once, the journal saw each bar once
    assert group()["entries-read"] == len(predictions)
    from hft.execution.journal import Journal

    events = Journal(home / f"journal-{final}").read()
    seen = events[events["type"] == hft_exec.EventType.prediction_seen]
    again = seen["reason"] == hft_exec.REASONS.index("duplicate_prediction")  # delivered again after a kill: refused
    assert len(np.unique(seen[["instrument", "bar_ts_ns"]])) == (~again).sum() == len(predictions)
    # every order and fill once, in Redis and Kafka; the books of a run without failure
    records = check_records(r, config, kafka_start)
    assert sum(x["type"] == "fill" for x in records) > 100
    books_equal_a_run_without_failure(r, TICKERS, [f for _, f in r.xrange("hft:predictions")], records)


def _new_master(config, old_port: int) -> bool:
    from redis.sentinel import MasterNotFoundError

    from hft.redis_conn import master_address

    try:
        return master_address(config.redis_url)[1] != old_port
    except MasterNotFoundError:
        return False
