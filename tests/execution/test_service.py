"""The executor service against a real redis-server: predictions stream -> C++ executor -> journal ->
orders, fills and positions in Redis; bad entries refused and counted; kill switch; recovery; kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hft_exec
from exec_fixtures import LOOSE
from hft.execution.config import ExecConfig
from hft.execution.journal import Journal
from hft.execution.service import GROUP, MALFORMED, ExecutionService, set_halt
from hft.schemas import Prediction
from hft.streaming.store import RedisStore, entry_values

TICKERS = ["AAA", "BBB"]
T0_MS = 1_711_978_200_000  # 2024-04-01 13:30 UTC
FIELDS = ["ticker", "interval", "bar_ts", "probability", "model_version", "close", "volatility", "produced_ns",
          "predicted_ns", "written_ns"]  # a predictions stream entry, as RedisStore writes it


def predictions(n: int, tickers=TICKERS, seed: int = 1, start_ms: int = T0_MS) -> list[Prediction]:
    """Alternating conviction so positions change often: every ticker gets a bar per minute."""
    rng = np.random.default_rng(seed)
    out, price = [], {t: 100.0 for t in tickers}
    for k in range(n):
        for t in tickers:
            price[t] *= float(np.exp(rng.normal(0, 0.001)))
            p = 0.8 if (k // 3) % 2 == 0 else 0.2
            out.append(Prediction(t, "1m", start_ms + 60_000 * k, p, "1", None, 0, price[t], 0.002))
    return out


def write(client, preds: list[Prediction], batch_id: int = 0) -> None:
    RedisStore(client).commit(batch_id, [], preds)


def service(client, tmp_path: Path, **overrides) -> ExecutionService:
    return ExecutionService(client, tmp_path / "journal", TICKERS, ExecConfig(**{**LOOSE, **overrides}), block_ms=10)


def drain(svc: ExecutionService) -> dict:
    totals = svc.run(stop_when_idle_s=0.05)
    return dict(totals)


def order_records(client) -> list[dict]:
    return [f for _, f in client.xrange("hft:orders")]


def metric(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_service_predictions_become_orders_fills_and_positions_in_redis(client, tmp_path):
    write(client, predictions(12))
    svc = service(client, tmp_path)
    orders_before = metric("hft_exec_decisions_total", action="order")
    slippage_before = {le: metric("hft_exec_fill_slippage_bps_bucket", le=le) for le in ("0.0", "5.0", "+Inf")}
    fills_before = metric("hft_exec_fills_total", ticker="AAA") + metric("hft_exec_fills_total", ticker="BBB")
    totals = drain(svc)
    assert metric("hft_exec_decisions_total", action="order") - orders_before == totals["orders"]
    assert metric("hft_exec_fills_total", ticker="AAA") + metric("hft_exec_fills_total", ticker="BBB") - fills_before == totals["fills"]
    assert metric("hft_exec_position_shares", ticker="AAA") == svc.executor.position(0)
    assert metric("hft_exec_decision_latency_seconds_count") > 0
    assert totals["entries"] == 24
    # every fill measured against the close its prediction carried (orders decided in this run)
    fills_px = [(float(f["price"]), int(f["qty"]), f["correlation_id"]) for f in order_records(client) if f["type"] == "fill"]
    close = {p.correlation_id: p.close for p in predictions(12)}
    bps = [(1 if q > 0 else -1) * (px - close[cid]) / close[cid] * 1e4 for px, q, cid in fills_px]
    assert any(b != 0 for b in bps)  # the paper exchange's fills are not all at the close
    for le, before in slippage_before.items():  # (negative buckets: prometheus-client exposes no _sum)
        want = sum(b <= float(le) for b in bps)
        assert metric("hft_exec_fill_slippage_bps_bucket", le=le) - before == want == (len(bps) if le == "+Inf" else want)
    assert totals["orders"] > 4 and totals["fills"] > 0, totals
    records = order_records(client)
    sent = [r for r in records if r["type"] == "order_sent"]
    fills = [r for r in records if r["type"] == "fill"]
    assert len(sent) == totals["orders"] and len(fills) == totals["fills"]
    for t in TICKERS:  # positions in Redis = the sum of the published fills = the executor's
        from_fills = sum(int(r["qty"]) for r in fills if r["ticker"] == t)
        assert int(client.hget("hft:positions", t)) == from_fills == svc.executor.position(TICKERS.index(t))
        mine = [r for r in fills if r["ticker"] == t]  # each fill record carries the position after it
        assert [int(r["position"]) for r in mine] == list(np.cumsum([int(r["qty"]) for r in mine]))
    assert client.xpending("hft:predictions", GROUP)["pending"] == 0  # everything acknowledged
    assert int(client.get("hft:exec:published")) == svc.journal.records


def test_orders_fills_and_done_records_carry_their_bars_correlation_id_across_a_restart(client, tmp_path):
    preds = predictions(12)
    by_cid = {p.correlation_id: p for p in preds}
    write(client, preds[:12])
    first = service(client, tmp_path)
    drain(first)
    first.close()
    write(client, preds[12:], batch_id=1)
    second = service(client, tmp_path)  # the map order -> bar is rebuilt from the journal
    drain(second)
    records = order_records(client)
    cid_of_order: dict[str, str] = {}
    for r in records:
        if r["type"] == "order_sent":
            p = by_cid[r["correlation_id"]]  # the prediction that caused it
            assert p.ticker == r["ticker"]
            cid_of_order[r["order_id"]] = r["correlation_id"]
    assert len(cid_of_order) > 4
    followers = [r for r in records if r["type"] in ("fill", "order_done")]
    assert followers and all(r["correlation_id"] == cid_of_order[r["order_id"]] for r in followers)
    assert second._order_cid.keys() <= {int(o) for o in cid_of_order}


def test_service_bad_entries_are_refused_with_reason_and_never_ordered(client, tmp_path):
    good = predictions(1)
    bad = [
        Prediction("AAA", "1m", T0_MS + 60_000, 0.9, "1", None, 0, float("nan"), 0.001),
        Prediction("AAA", "1m", T0_MS + 120_000, 0.9, "1", None, 0, -5.0, 0.001),
        Prediction("AAA", "1m", T0_MS + 180_000, float("inf"), "1", None, 0, 100.0, 0.001),
        Prediction("ZZZ", "1m", T0_MS + 60_000, 0.9, "1", None, 0, 100.0, 0.001),
    ]
    write(client, good + bad)
    # BBB's bar again, as a producer retry would append it (the store's own dedupe marker bypassed)
    client.xadd("hft:predictions", dict(zip(FIELDS, entry_values(good[1], 0))))
    client.xadd("hft:predictions", {"ticker": "AAA", "bar_ts": "soon", "probability": "0.9"})
    client.xadd("hft:predictions", {"probability": "0.9"})
    svc = service(client, tmp_path)
    first = svc.step()
    assert first.entries == 9
    assert first.rejected == {"invalid_price": 2, "invalid_probability": 1, "unknown_instrument": 1,
                              "duplicate_prediction": 1, MALFORMED: 2}
    assert first.orders == 2  # the two good predictions only
    assert client.xpending("hft:predictions", GROUP)["pending"] == 0


def test_service_kill_switch_halts_before_next_decision_and_resumes(client, tmp_path):
    preds = predictions(10)
    write(client, preds[:4])
    svc = service(client, tmp_path)
    assert drain(svc)["orders"] > 0
    set_halt(client)
    write(client, preds[4:], batch_id=1)
    totals = drain(svc)
    assert totals.get("orders", 0) == 0
    assert totals["rejected:kill_switch"] > 0
    assert svc.executor.halted and client.hget("hft:exec:state", "halted") == "1"
    assert metric("hft_exec_halted") == 1.0 and metric("hft_exec_rejections_total", reason="kill_switch") > 0
    assert all(svc.executor.open_orders(i) == 0 for i in range(len(TICKERS)))  # working orders cancelled
    set_halt(client, halt=False)
    write(client, predictions(6, start_ms=T0_MS + 60_000 * 20), batch_id=2)
    assert drain(svc)["orders"] > 0
    assert not svc.executor.halted


def test_a_halt_set_while_the_read_blocks_stops_the_entries_that_read_returns(client, tmp_path):
    """The service checks the kill switch before reading and again after: entries that arrive during the
    blocking read, after the halt, become no order (found by the alert end-to-end test)."""
    import threading

    write(client, predictions(4))
    svc = ExecutionService(client, tmp_path / "journal", TICKERS, ExecConfig(**LOOSE), block_ms=2000)
    assert drain(svc)["orders"] > 0

    def later():
        time.sleep(0.3)  # the step is blocked in XREADGROUP by now
        set_halt(client)
        write(client, predictions(6, start_ms=T0_MS + 60_000 * 10), batch_id=1)

    t = threading.Thread(target=later)
    t.start()
    result = svc.step()
    t.join()
    assert result.entries > 0 and result.orders == 0 and result.rejected["kill_switch"] > 0
    assert svc.executor.halted


def test_service_restart_recovers_from_journal_and_refuses_replayed_predictions(client, tmp_path):
    preds = predictions(8)
    write(client, preds)
    first = service(client, tmp_path)
    drain(first)
    state = (first.executor.cash, [first.executor.position(i) for i in range(2)], first.executor.next_order_id)
    first.close()
    second = service(client, tmp_path)
    assert (second.executor.cash, [second.executor.position(i) for i in range(2)], second.executor.next_order_id) == state
    # the same predictions delivered again (a producer retry) never become orders
    for p in preds[:4]:
        client.xadd("hft:predictions", dict(zip(FIELDS, entry_values(p, 0))))
    again = second.step()
    assert again.orders == 0 and again.rejected == {"duplicate_prediction": 4}


def test_journal_cuts_a_torn_last_record(tmp_path):
    import hft_exec

    j = Journal(tmp_path)
    j.append(np.zeros(3, dtype=hft_exec.EVENT_DTYPE))
    j.close()
    with open(tmp_path / "events.bin", "ab") as f:
        f.write(b"\x01" * 20)
    j = Journal(tmp_path)
    assert j.records == 3 and len(j.read()) == 3
    assert (tmp_path / "events.bin").stat().st_size == 3 * hft_exec.EVENT_DTYPE.itemsize


def test_journal_instrument_ids_never_change(tmp_path):
    j = Journal(tmp_path)
    assert j.instruments(["AAA", "BBB"]) == ["AAA", "BBB"]
    assert Journal(tmp_path).instruments(["CCC", "AAA"]) == ["AAA", "BBB", "CCC"]


def test_exec_config_rejects_inconsistent_thresholds_and_bad_env(monkeypatch):
    with pytest.raises(ValueError, match="thresholds"):
        ExecConfig(enter_long=0.51, exit_long=0.55)
    monkeypatch.setenv("HFT_EXEC_MAX_POSITION", "lots")
    with pytest.raises(ValueError, match="HFT_EXEC_MAX_POSITION"):
        ExecConfig.from_env()
    monkeypatch.setenv("HFT_EXEC_MAX_POSITION", "5")
    assert ExecConfig.from_env().to_core().risk.max_position == 5


def _run_cli(redis_url: str, journal: Path, env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "hft.cli", "execute", "run", "--no-kafka", "--redis", redis_url,
           "--journal", str(journal), "--tickers", ",".join(TICKERS), "--batch", "20", "--metrics-port", "0",
           "--stop-when-idle", "2"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def test_service_kill_9_mid_stream_then_restart_no_duplicate_order_no_lost_fill(client, redis_url, tmp_path):
    env = {**os.environ, **{f"HFT_EXEC_{k.upper()}": str(v) for k, v in LOOSE.items()}}
    preds = predictions(600)
    for k in range(0, len(preds), 100):
        write(client, preds[k:k + 100], batch_id=k)
    journal = tmp_path / "journal"
    proc = _run_cli(redis_url, journal, env)
    deadline = time.monotonic() + 60
    while int(client.get("hft:exec:published") or 0) < 300:  # mid-stream
        assert proc.poll() is None and time.monotonic() < deadline, "the service did not start deciding"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert client.xpending("hft:predictions", GROUP)["pending"] > 0 or client.xinfo_groups("hft:predictions")[0]["lag"] > 0
    out, _ = _run_cli(redis_url, journal, env).communicate(timeout=120)
    assert "predictions read" in out

    records = order_records(client)
    seqs = [int(r["seq"]) for r in records]
    assert len(seqs) == len(set(seqs)), "a journal record was published twice"
    sent = [int(r["order_id"]) for r in records if r["type"] == "order_sent"]
    assert len(sent) == len(set(sent)) and sent == sorted(sent), "an order was sent twice"
    events = Journal(journal).read()
    assert len(events[events["type"] == hft_exec.EventType.order_sent]) == len(sent)
    assert len(events[events["type"] == hft_exec.EventType.fill]) == sum(r["type"] == "fill" for r in records), "a fill was lost"
    for t in TICKERS:  # positions published across the crash still add up
        mine = [r for r in records if r["type"] == "fill" and r["ticker"] == t]
        assert [int(r["position"]) for r in mine] == list(np.cumsum([int(r["qty"]) for r in mine]))
    # every prediction decided exactly once (dedupe across the crash), and the result equals a run without crash
    seen = events[events["type"] == hft_exec.EventType.prediction_seen]
    assert len(np.unique(seen[["instrument", "bar_ts_ns"]])) == len(preds)
    client.delete("hft:orders", "hft:exec:published")
    client.xgroup_destroy("hft:predictions", GROUP)
    clean = service(client, tmp_path / "clean")
    drain(clean)
    for i, t in enumerate(TICKERS):
        assert int(client.hget("hft:positions", t)) == clean.executor.position(i)
    assert [int(r["order_id"]) for r in order_records(client) if r["type"] == "order_sent"] == sent


def test_path_latency_by_stage_from_each_bars_production(client, tmp_path):
    """received, decided: every prediction; sent: those that became orders; filled: each fill. A hostile
    produced_ns is ignored for the latency, never a reason to refuse the prediction."""
    stages = ("received", "decided", "sent", "filled")
    before = {s: metric("hft_path_latency_seconds_count", stage=s) for s in stages}
    sums = {s: metric("hft_path_latency_seconds_sum", stage=s) for s in stages}
    produced = time.time_ns() - 200_000_000  # the bars left their collector 0.2 s ago
    preds = [Prediction(p.ticker, p.interval, p.ts_ms, p.probability, p.model_version, produced, 0, p.close,
                        p.volatility) for p in predictions(12)]
    write(client, preds)
    hostile = ["abc", "-5", "99999999999999999999", ""]
    for k, bad in enumerate(hostile):  # later bars of AAA, their produced_ns garbage
        fields = dict(zip(FIELDS, entry_values(preds[0], 0)))
        client.xadd("hft:predictions", {**fields, "bar_ts": str(T0_MS + 60_000 * (100 + k)), "produced_ns": bad})
    totals = drain(service(client, tmp_path))
    assert totals["entries"] == 24 + len(hostile) and MALFORMED not in totals
    count = {s: metric("hft_path_latency_seconds_count", stage=s) - before[s] for s in stages}
    assert count["received"] == count["decided"] == 24  # the hostile ones decided, not observed
    assert 0 < count["sent"] <= totals["orders"] and 0 < count["filled"] <= totals["fills"]
    for s in stages:
        mean = (metric("hft_path_latency_seconds_sum", stage=s) - sums[s]) / count[s]
        assert 0.2 <= mean < 30, (s, mean)


def test_the_executors_lag_behind_the_predictions_stream_is_a_metric(client, tmp_path):
    svc = service(client, tmp_path)
    write(client, predictions(5))
    svc.update_gauges()
    assert metric("hft_exec_predictions_lag") == 10 and metric("hft_exec_predictions_pending") == 0
    drain(svc)
    assert metric("hft_exec_predictions_lag") == 0 and metric("hft_exec_predictions_pending") == 0
    assert metric("hft_exec_daily_loss_limit") == svc.config.daily_loss_limit > 0
    assert metric("hft_exec_day_pnl") == pytest.approx(svc.executor.day_pnl / hft_exec.TICKS_PER_UNIT)


def test_with_several_venues_the_service_records_name_the_venue_of_each_order_and_fill(client, tmp_path):
    write(client, predictions(12))
    svc = service(client, tmp_path, venues="lit=0.5/1/0,cheap=0.1/0.5/0/0/15000")  # no latency, as LOOSE
    totals = drain(svc)
    records = [r for r in order_records(client) if r["type"] in ("order_sent", "fill", "order_done")]
    assert totals["fills"] > 0 and {r["venue"] for r in records} == {"lit", "cheap"}
    for r in (r for r in records if r["type"] == "fill"):  # each fill at its venue's fee
        bps = {"lit": 0.5, "cheap": 0.1}[r["venue"]]
        assert float(r["fee"]) == pytest.approx(abs(int(r["qty"])) * float(r["price"]) * bps * 1e-4, abs=1e-4)


def test_a_silenced_venue_gets_no_order_and_its_orders_are_resolved_and_published_when_it_answers(client, tmp_path):
    from hft.schemas import RedisKeys

    venues = "lit=0.5/1/100,cheap=0.1/0.5/100/0/1000000"  # cheap takes everything while it answers
    preds = predictions(12)
    write(client, preds[:2])  # one bar of each ticker: an order each, at cheap, to execute at the next bar
    svc = ExecutionService(client, tmp_path / "journal", TICKERS, ExecConfig(**{**LOOSE, "latency_us": 100.0,
                           "venues": venues}), block_ms=10, replay_clock=True)
    drain(svc)
    first = order_records(client)
    assert [r["venue"] for r in first if r["type"] == "order_sent"] == ["cheap", "cheap"]
    client.sadd(RedisKeys().exec_silent_venues, "cheap")
    write(client, preds[2:], batch_id=1)
    drain(svc)
    records = order_records(client)
    later = [r for r in records[len(first):] if r["type"] in ("order_sent", "fill")]
    assert later and {r["venue"] for r in later} == {"lit"}  # nothing new goes to (or is heard from) cheap
    assert svc.executor.venue_working_notional(1) > 0  # cheap's first orders: still working, their fate unknown
    client.srem(RedisKeys().exec_silent_venues, "cheap")
    svc.step()  # the next batch (none here) resolves them: confirmed fills, the rest cancelled
    resolved = [r for r in order_records(client)[len(records):] if r.get("venue") == "cheap"]
    assert resolved and all(r["type"] in ("fill", "order_done") for r in resolved)
    assert {int(r["order_id"]) for r in resolved if r["type"] == "order_done"} == {
        int(r["order_id"]) for r in first if r["type"] == "order_sent"}  # both closed: filled or cancelled
    assert svc.executor.venue_working_notional(1) == 0
    for t in TICKERS:  # positions in Redis = the sum of every published fill = the executor's
        fills = [int(r["qty"]) for r in order_records(client) if r["type"] == "fill" and r["ticker"] == t]
        assert int(client.hget("hft:positions", t)) == sum(fills) == svc.executor.position(TICKERS.index(t))
    assert int(client.get("hft:exec:published")) == svc.journal.records
