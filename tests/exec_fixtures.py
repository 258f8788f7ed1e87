"""What the executor failover tests share: hot standby instances as real processes, a flow of predictions,
and the checks of the books (each journal record once in Redis and Kafka, the same as a run without failure)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Limits that never bind, so that a ticker's decisions depend on its own predictions only.
LOOSE = dict(orders_per_second=1e6, order_burst=1e6, max_prediction_age_s=1e9, latency_us=0.0)


def executor(env: dict, home: Path, name: str, tickers: list[str], idle_s: float = 3) -> subprocess.Popen:
    """``hft execute run --ha`` as instance ``name`` (journal ``home/journal-<name>``, log ``home/<name>.err``)."""
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("hft")), "execute", "run", "--ha", "--instance", name, "--journal",
         str(home / f"journal-{name}"), "--tickers", ",".join(tickers), "--batch", "20", "--replay-clock",
         "--metrics-port", "0", "--stop-when-idle", str(idle_s)],
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

    from hft.kafka_conn import client_config

    c = Consumer(client_config(config.kafka_bootstrap, {"group.id": f"check-{time.time_ns()}", "enable.auto.commit": False,
                                                        "isolation.level": "read_committed"}))
    c.assign([TopicPartition("orders", 0, start)])
    out, idle = [], 0
    while idle < 5:
        msgs = c.consume(500, timeout=1.0)
        idle = 0 if msgs else idle + 1
        out += [json.loads(m.value()) for m in msgs if m.error() is None]
    c.close()
    return out


def books_equal_a_run_without_failure(client, tickers: list[str], entries: list[dict], records: list[dict]) -> None:
    """The predictions stream's ``entries`` (in its order) through one executor that never fails (the settings
    of os.environ; another key prefix, same Redis): the same orders and fills as ``records``, the
    same positions and cash as the executor's state in Redis."""
    import hft_exec
    from hft.config import Settings
    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService

    pipe = client.pipeline()
    for fields in entries:
        pipe.xadd("clean:predictions", fields)
    pipe.execute()
    clean_dir = Settings.from_env().home / f"clean-{time.time_ns()}"
    clean = ExecutionService(client, clean_dir, tickers, ExecConfig.from_env(), prefix="clean", block_ms=10, replay_clock=True)
    clean.run(stop_when_idle_s=0.1)
    clean.close()
    for i, t in enumerate(tickers):
        assert int(client.hget("hft:positions", t)) == clean.executor.position(i), t
    state = client.hgetall("hft:exec:state")
    assert abs(float(state["cash"]) - clean.executor.cash / hft_exec.TICKS_PER_UNIT) < 1e-6
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


def exec_stack(tmp_path_factory, name: str, exec_env: dict):
    """Kafka and Redis up for an executor test module (``exec_env``: its ``HFT_EXEC_*``), set in os.environ
    meanwhile; yields (environment, StackConfig), stops both after."""
    import os

    from hft import stack
    from stream_fixtures import stream_env

    home = tmp_path_factory.mktemp(name)
    env = {**stream_env(home), **exec_env}
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
