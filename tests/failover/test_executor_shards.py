"""Load-balanced executors with real processes (``hft execute run --shards 6``, three instances) on a real Kafka and
Redis: the shards spread over the instances; kill -9 of one mid-flow with predictions outstanding; its shards
are taken over by the others; every prediction decided once, no order twice, one holder per shard at a time, and
the books equal one executor's without failure."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from exec_fixtures import LOOSE, Flow, exec_stack, kafka_end, kafka_orders
from hft.execution.shards import shard_of
from hft.redis_conn import connect
from polling import until

sys.path.insert(0, str(Path(__file__).parents[1] / "execution"))
from test_service import predictions  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.failover]

SHARDS = 6
TICKERS = ["FFF", "GGG", "AAA", "TAD", "MMM", "NNN", "BBB", "CCC", "DDD", "EEE", "KKK", "TAF"]  # two per shard
EXEC_ENV = {f"HFT_EXEC_{k.upper()}": str(v) for k, v in {**LOOSE, "max_fill_qty": 3}.items()}


def instance(env: dict, home: Path, name: str, idle_s: float = 4) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).with_name("hft")), "execute", "run", "--shards", str(SHARDS), "--instance", name,
         "--journal", str(home / f"journal-{name}"), "--tickers", ",".join(TICKERS), "--batch", "20",
         "--replay-clock", "--metrics-port", "0", "--stop-when-idle", str(idle_s)],
        env=env, stdout=subprocess.PIPE, stderr=open(home / f"{name}.err", "wb"), text=True)  # noqa: SIM115


def holders(client) -> dict[str, str]:
    """Shard -> the instance holding its lease."""
    out = {}
    for k in range(SHARDS):
        held = client.get(f"hft:exec:leader:{k + 1}-of-{SHARDS}")
        if held:
            out[f"{k + 1}-of-{SHARDS}"] = held.split(":", 1)[1]
    return out


def outstanding(client) -> int:
    return sum(int(g["pending"]) + int(g["lag"] or 0) for g in client.xinfo_groups("hft:predictions")
               if g["name"].startswith("executor:"))


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    yield from exec_stack(tmp_path_factory, "shards", EXEC_ENV)


def test_three_executors_share_the_shards_and_one_killed_mid_flow_loses_and_repeats_nothing(stack_env, tmp_path):
    from hft.config import Settings
    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService

    env, config = stack_env
    client = connect(config.redis_url)
    client.flushdb()
    kafka_start = kafka_end(config)
    preds = predictions(400, TICKERS, seed=11)
    procs = {name: instance(env, tmp_path, name) for name in ("x", "y", "z")}
    try:
        # the first to start takes all six; each that joins lowers the share, and the others give shards back
        until(lambda: sorted(Counter(holders(client).values()).values()) == [2, 2, 2], 60,
              "the shards spread evenly over the three instances")
        flow = Flow(client, preds, size=48, pause=0.05)
        flow.start()
        until(lambda: len(client.xrange("hft:orders", count=200)) >= 100, 60, "the instances to be trading")
        victim = "y"
        lost = sorted(s for s, who in holders(client).items() if who == victim)
        in_flight = outstanding(client)
        os.kill(procs[victim].pid, signal.SIGKILL)
        killed = time.monotonic()
        assert flow.is_alive() and in_flight > 0, "nothing was outstanding at the kill"
        until(lambda: all(holders(client).get(s) in ("x", "z") for s in lost), 30, "the survivors to take its shards",
              every=0.01)
        took = time.monotonic() - killed
        assert sorted(Counter(holders(client).values()).values()) == [3, 3]
        flow.join(120)
        for name in ("x", "z"):
            out, _ = procs[name].communicate(timeout=240)
            assert procs[name].returncode == 0 and "predictions read" in out, (tmp_path / f"{name}.err").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    assert outstanding(client) == 0  # every shard's group: everything delivered and acknowledged
    records = [f for _, f in client.xrange("hft:orders")]
    per_shard: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        assert shard_of(r["ticker"], SHARDS) + 1 == int(r["shard"].split("-")[0]), r  # each ticker in its shard
        per_shard[r["shard"]].append(r)
    for shard, mine in per_shard.items():
        seqs = [int(r["seq"]) for r in mine]
        assert seqs == sorted(set(seqs)), f"shard {shard}: a journal record published twice or out of order"
        epochs = [int(r["epoch"]) for r in mine]
        assert epochs == sorted(epochs), f"shard {shard}: two holders interleaved"
    assert {int(r["epoch"]) for s in lost for r in per_shard[s]} != {1}, "no takeover published anything"
    sent = [int(r["order_id"]) for r in records if r["type"] == "order_sent"]
    assert len(sent) == len(set(sent)), "an order was sent twice"
    in_kafka = kafka_orders(config, kafka_start)
    assert Counter((r["shard"], r["seq"]) for r in in_kafka) == Counter((r["shard"], int(r["seq"])) for r in records)
    # One executor over the same predictions, never failing: the same orders and fills, the same positions.
    for _, fields in client.xrange("hft:predictions"):
        client.xadd("clean:predictions", fields)
    clean = ExecutionService(client, Settings.from_env().home / f"clean-{time.time_ns()}", TICKERS,
                             ExecConfig.from_env(), prefix="clean", block_ms=10, replay_clock=True)
    clean.run(stop_when_idle_s=0.1)
    for i, t in enumerate(clean.tickers):
        assert int(client.hget("hft:positions", t)) == clean.executor.position(i), t
    mine = sorted((r["ticker"], r["type"], r["qty"], r["price"]) for r in records if r["type"] != "order_done")
    theirs = sorted((r["ticker"], r["type"], r["qty"], r["price"]) for _, r in client.xrange("clean:orders")
                    if r["type"] != "order_done")
    assert mine == theirs, "the shards decided other orders or fills than one executor would"
    assert len([r for r in records if r["type"] == "fill"]) > 200, "not a heavy order flow"
    print(f"\nexecutor y killed holding shards {lost} with {in_flight} predictions outstanding: the survivors held "
          f"them after {took:.2f} s (lease 2 s)")
