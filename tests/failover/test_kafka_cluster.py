"""A three-broker Kafka cluster (``hft stack up --kafka-brokers 3``) under a running stream: kill -9 the leader
of a partition while a collector publishes and the streaming job predicts. No acknowledged bar is lost, none
is written twice, every bar is predicted exactly once, the collector and the stream carry on, and the broker
metrics show the under-replicated partitions until the node is back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import date
from pathlib import Path

import pytest

from hft.redis_conn import connect
from polling import until
from ports import free_kafka_ports
from stream_fixtures import Collector, backlog, committed, driver_of, ready_count, stream_env, stream_stack

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("cluster")
    kafka, controller, metrics = free_kafka_ports(3)
    env = stream_env(home, HFT_KAFKA_BROKERS="3", HFT_KAFKA_PORT=str(kafka), HFT_KAFKA_CONTROLLER_PORT=str(controller),
                     HFT_KAFKA_METRICS_PORT=str(metrics), HFT_KAFKA_HEAP="384m")
    with stream_stack(env, TICKERS) as config:
        yield env, config


def _partitions(config, topic: str) -> dict[int, tuple[int, list[int], list[int]]]:
    """{partition: (leader, replicas, in-sync replicas)}."""
    from hft.stack.kafka import admin_client

    md = admin_client(config.kafka_bootstrap).list_topics(topic, timeout=10)
    return {p.id: (p.leader, list(p.replicas), list(p.isrs)) for p in md.topics[topic].partitions.values()}


def _broker_gauge(config, node: int, name: str) -> float:
    port = config.kafka_node_ports(node)[2]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def test_topics_have_three_replicas_and_need_two_in_sync(cluster):
    from confluent_kafka.admin import ConfigResource

    from hft.stack.kafka import admin_client

    _, config = cluster
    for topic in ("market.bars", "market.bars.dlq", "predictions"):
        for leader, replicas, isr in _partitions(config, topic).values():
            assert sorted(replicas) == [1, 2, 3] and sorted(isr) == [1, 2, 3] and leader in replicas, topic
    admin = admin_client(config.kafka_bootstrap)  # kept: its futures die with it
    (future,) = admin.describe_configs([ConfigResource("topic", "market.bars")]).values()
    assert future.result()["min.insync.replicas"].value == "2"


def test_kill_9_of_a_partition_leader_mid_stream_loses_and_duplicates_nothing(cluster):
    from hft import stack
    from hft.stack.services import Kafka
    from hft.streaming import collectors
    from hft.streaming.kafka_io import watermarks
    from hft.streaming.store import RedisStore

    env, config = cluster
    store = RedisStore(connect(config.redis_url))
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))

    def in_kafka() -> int:
        return sum(high for _, high in watermarks(config.kafka_bootstrap, "market.bars").values())

    # the first 120 bars at once, the rest in small acknowledged batches once the stream runs
    first = 120
    job = subprocess.Popen(
        [str(Path(sys.executable).with_name("hft")), "stream", "--master", "local[2]", "--tickers", ",".join(TICKERS),
         "--trigger", "500 milliseconds", "--max-offsets", "40", "--metrics-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(Path(env["HFT_HOME"]) / "stream.err", "wb"),  # noqa: SIM115
        start_new_session=True)
    collector = Collector(config, messages[first:])
    try:
        sent = collectors.publish(messages[:first], config.kafka_bootstrap)
        until(lambda: committed(store) >= 80, 180, "the stream to commit its first batches")
        collector.start()
        until(lambda: collector.acked >= 100, 60, "the collector to be publishing")
        leader = _partitions(config, "market.bars")[0][0]
        victim = Kafka(config, leader)
        pid = victim.pid()
        assert pid is not None
        in_flight = until(lambda: backlog(config, store), 30, "bars in Kafka the stream has not committed")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        assert collector.is_alive(), "the collector had finished before the kill: nothing was being published"

        survivor = next(n for n in (1, 2, 3) if n != leader)
        at_kill = committed(store)
        until(lambda: _partitions(config, "market.bars")[0][0] not in (-1, leader), 60, "a new leader")
        took_over = time.monotonic() - killed_at
        until(lambda: committed(store) > at_kill, 60, "the stream to commit after the failover", every=0.05)
        predicting = time.monotonic() - killed_at
        assert predicting < 30, f"the stream committed nothing for {predicting:.0f} s after the leader's death"
        until(lambda: _broker_gauge(config, survivor, "kafka_server_replicamanager_underreplicatedpartitions") > 0,
              60, "under-replicated partitions in the survivor's metrics")

        collector.join(300)
        assert not collector.is_alive() and not collector.errors, collector.errors
        assert (sent.sent + collector.acked, sent.failed + collector.failed) == (len(messages), 0), \
            "the collector did not get every bar acknowledged"
        assert in_kafka() == len(messages), "an acknowledged bar is missing from Kafka, or one was written twice"
        until(lambda: committed(store) == len(messages), 240, "the stream to catch up after the failover")
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    predictions = store.stream()
    assert len({(e["ticker"], e["bar_ts"]) for e in predictions}) == len(predictions) == ready_count(messages)
    print(f"\nKafka leader {leader} killed with {in_flight} bars in flight; partition 0 led again after "
          f"{took_over:.1f} s, the stream committed again after {predicting:.1f} s")

    # The node comes back, catches up, and the cluster is fully replicated again.
    stack.up(config, ("kafka",))
    until(lambda: all(sorted(isr) == [1, 2, 3] for _, _, isr in _partitions(config, "market.bars").values()),
           120, "the restarted broker back in sync")
    assert _broker_gauge(config, survivor, "kafka_server_replicamanager_underreplicatedpartitions") == 0


def test_a_killed_stream_driver_is_restarted_by_its_supervisor_and_loses_and_repeats_nothing(cluster):
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env, config = cluster
    store = RedisStore(connect(config.redis_url))
    messages = collectors.synthetic(TICKERS, date(2024, 3, 12), date(2024, 3, 12))
    before = len(store.stream())
    start = committed(store)
    supervisor = subprocess.Popen(
        [str(Path(sys.executable).with_name("hft")), "stream", "--supervise", "--master", "local[2]", "--tickers",
         ",".join(TICKERS), "--trigger", "500 milliseconds", "--max-offsets", "40", "--metrics-port", "0"],
        env=env, stdout=subprocess.DEVNULL, stderr=open(Path(env["HFT_HOME"]) / "supervised.err", "wb"),  # noqa: SIM115
        start_new_session=True)
    first = 120
    collector = Collector(config, messages[first:])
    try:
        collectors.publish(messages[:first], config.kafka_bootstrap)
        until(lambda: committed(store) >= start + 80, 180, "the supervised stream to commit")
        collector.start()
        in_flight = until(lambda: backlog(config, store), 30, "bars in Kafka the stream has not committed")
        driver = driver_of(supervisor.pid)
        assert driver is not None
        os.killpg(driver, signal.SIGKILL)  # the driver JVM and its Python process, as a lost machine would
        killed_at = time.monotonic()
        at_kill = committed(store)
        assert collector.is_alive() and in_flight > 0
        until(lambda: driver_of(supervisor.pid) not in (None, driver), 30, "the supervisor to restart the driver")
        until(lambda: committed(store) > at_kill, 180, "the restarted driver's first commit")
        restart_s = time.monotonic() - killed_at
        collector.join(300)
        assert not collector.errors, collector.errors
        until(lambda: committed(store) == start + len(messages), 240, "the restarted stream to catch up")
        assert supervisor.poll() is None
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)  # the supervisor passes it on to the driver
        try:
            supervisor.wait(60)
        finally:
            if (d := driver_of(supervisor.pid)) is not None:
                os.killpg(d, signal.SIGKILL)
    new = store.stream()[before:]
    assert len({(e["ticker"], e["bar_ts"]) for e in new}) == len(new) == ready_count(messages)
    print(f"\nstream driver killed with {in_flight} bars in flight; committing again {restart_s:.1f} s later")
