"""Shards of the tickers (hft.execution.shards) against a real redis-server: each shard decides its own tickers
once, on its own keys and order ids, the same as one executor would; the gross limit is split and the day's loss
limit shared across shards; the kill switch halts and releases every shard. The multi-process scenario (three
instances, one killed) is tests/failover/test_executor_shards.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from test_service import T0_MS, drain, order_records, predictions, write

from exec_fixtures import LOOSE
from hft.execution.config import ExecConfig
from hft.execution.service import ExecutionService, set_halt
from hft.execution.shards import ID_SPACE, Shard, shard_of
from hft.schemas import RedisKeys

TICKERS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]


def shard_service(client, tmp_path: Path, k: int, count: int = 2, **overrides) -> ExecutionService:
    return ExecutionService(client, tmp_path / f"shard-{k}", TICKERS, ExecConfig(**{**LOOSE, **overrides}), block_ms=10,
                            replay_clock=True, shard=Shard(k, count))


def test_shard_of_is_stable_and_spreads_tickers():
    assert shard_of("aapl", 6) == shard_of(" AAPL ", 6) == 0  # crc32: the same on every machine and every run
    spread = Counter(shard_of(f"T{i:03d}", 4) for i in range(400))
    assert set(spread) == {0, 1, 2, 3} and min(spread.values()) > 70
    with pytest.raises(ValueError, match="shards are 1 to"):
        Shard(2, 2)


def test_each_shard_decides_its_own_tickers_once_like_one_executor(client, tmp_path):
    preds = predictions(30, TICKERS, seed=5)
    write(client, preds)
    shards = [shard_service(client, tmp_path, k) for k in (0, 1)]
    assert sorted(t for s in shards for t in s.tickers) == sorted(TICKERS)
    decided = sum(drain(s)["entries"] for s in shards)
    assert decided == 2 * len(preds)  # each shard reads every entry, decides its own
    for s in shards:
        c = s.executor.counters()
        assert c["predictions"] == 30 * len(s.tickers)  # nothing of the other shard's, nothing refused as unknown
        assert not c["by_reason"]["unknown_instrument"]
    records = order_records(client)
    by_shard = {k: [r for r in records if shard_of(r["ticker"], 2) == k and r["type"] == "order_sent"] for k in (0, 1)}
    for k, sent in by_shard.items():  # each shard's ids in its own space
        assert sent and all(k * ID_SPACE < int(r["order_id"]) < (k + 1) * ID_SPACE for r in sent)
    one = ExecutionService(client, tmp_path / "one", TICKERS, ExecConfig(**LOOSE), prefix="one", block_ms=10,
                           replay_clock=True)
    for _, fields in client.xrange("hft:predictions"):
        client.xadd("one:predictions", fields)
    drain(one)
    for t in TICKERS:
        s = next(s for s in shards if t in s.tickers)
        assert s.executor.position(s.tickers.index(t)) == one.executor.position(one.tickers.index(t)) != 0
        assert int(client.hget("hft:positions", t)) == s.executor.position(s.tickers.index(t))
    mine = sorted((r["ticker"], r["type"], r["qty"], r["price"]) for r in records)
    theirs = sorted((r["ticker"], r["type"], r["qty"], r["price"]) for _, r in client.xrange("one:orders"))
    assert mine == theirs


def test_the_other_shards_losses_of_the_day_count_against_this_shards_limit(client, tmp_path):
    preds = predictions(4, TICKERS, seed=6)
    first = shard_service(client, tmp_path, 0, daily_loss_limit=1000.0)
    write(client, [p for p in preds if first.shard.owns(p.ticker)][:2])
    drain(first)
    assert not first.executor.halted
    other = Shard(1, 2).name
    day = T0_MS * 1_000_000 // 86_400_000_000_000
    client.hset(RedisKeys().exec_risk, mapping={f"pnl:{other}": -1000 * 10_000, f"day:{other}": day})
    write(client, [p for p in preds if first.shard.owns(p.ticker)][2:], batch_id=1)
    totals = drain(first)
    assert first.executor.halted and first.executor.halt_reason == "daily_loss_limit", totals
    # Yesterday's losses do not count: a fresh shard on the same bars trades.
    client.hset(RedisKeys().exec_risk, f"day:{other}", day - 1)
    client.delete(*client.keys("hft:*"))
    client.hset(RedisKeys().exec_risk, mapping={f"pnl:{other}": -1000 * 10_000, f"day:{other}": day - 1})
    second = shard_service(client, tmp_path / "b", 0, daily_loss_limit=1000.0)
    write(client, [p for p in preds if second.shard.owns(p.ticker)])
    assert drain(second)["orders"] > 0 and not second.executor.halted


def test_each_shard_has_its_share_of_the_gross_limit(client, tmp_path):
    preds = predictions(3, TICKERS, seed=7)
    write(client, preds)
    svc = shard_service(client, tmp_path, 0, max_gross_notional=15_000.0)  # 7,500 for this shard
    totals = drain(svc)
    assert totals.get("rejected:max_gross_notional", 0) > 0
    assert svc.executor.gross / 10_000 <= 7_500.0
    gross = int(client.hget(RedisKeys().exec_risk, f"gross:{svc.shard.name}"))
    assert gross == svc.executor.gross


def test_kill_switch_halts_every_shard_and_a_release_resumes_each_once(client, tmp_path):
    preds = predictions(12, TICKERS, seed=8)
    write(client, preds[: len(TICKERS) * 2])
    shards = [shard_service(client, tmp_path, k) for k in (0, 1)]
    for s in shards:
        drain(s)
    set_halt(client)
    write(client, preds[len(TICKERS) * 2: len(TICKERS) * 4], batch_id=1)
    for s in shards:
        drain(s)
        assert s.executor.halted
    set_halt(client, halt=False)
    write(client, predictions(4, TICKERS, seed=9, start_ms=T0_MS + 60_000 * 30), batch_id=2)
    for s in shards:
        drain(s)
        assert not s.executor.halted  # both resumed (the release is not consumed by the first to see it)
    # A shard restarted later does not take the old release for a new one.
    set_halt(client)
    write(client, predictions(2, TICKERS, seed=9, start_ms=T0_MS + 60_000 * 40), batch_id=3)
    drain(shards[0])
    shards[0].close()
    again = shard_service(client, tmp_path, 0)
    assert again.executor.halted
