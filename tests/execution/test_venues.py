"""Several venues behind the executor (``HFT_EXEC_VENUES``, the C++ VenueRouter): the settings, the executor from
Python (a venue that stops answering), and the backtest's fills per venue."""

from __future__ import annotations

import json

import numpy as np
import pytest

import hft_exec
from hft.backtest.engine import BacktestConfig, random_predictions, run_backtest
from hft.backtest.metrics import per_venue, write_report
from hft.execution.config import ExecConfig

VENUES = "lit=0.5/1/100,cheap=0.1/0.5/500/0/20000,slow=0.3/1/1000"


def test_venues_setting_builds_one_router_venue_each_with_its_costs(monkeypatch):
    monkeypatch.setenv("HFT_EXEC_VENUES", VENUES)
    cfg = ExecConfig.from_env()
    assert cfg.venue_names == ["lit", "cheap", "slow"]
    core = cfg.to_core().venues
    assert [(v.exchange.fee_bps, v.exchange.slippage_bps, v.exchange.latency_ns) for v in core] == [
        (0.5, 1.0, 100_000), (0.1, 0.5, 500_000), (0.3, 1.0, 1_000_000)]
    assert core[1].max_working_notional == 20_000 and core[0].max_working_notional == 1e12
    assert ExecConfig().venue_names == ["paper"] and ExecConfig().to_core().venues == []


@pytest.mark.parametrize("spec, words", [
    ("lit", "is not name=fee_bps"), ("lit=0.5/1", "is not name=fee_bps"), ("lit=a/1/100", "not a number"),
    ("lit=-1/1/100", "not negative"), ("lit=0.5/1/100/0/0", "a working limit above 0"),
    ("lit=nan/1/100", "finite"), ("lit=1/1/1,lit=2/2/2", "named twice"), ("1st=1/1/1", "is not name=fee_bps"),
])
def test_a_bad_venues_setting_is_refused_with_what_is_wrong(spec, words):
    with pytest.raises(ValueError, match="venues") as e:
        ExecConfig(venues=spec)
    assert words in str(e.value)


def test_a_venue_that_stops_answering_keeps_its_order_working_until_it_answers_then_cancels_it():
    cfg = ExecConfig(venues=VENUES)
    ex = hft_exec.Executor(cfg.to_core(), 2)
    t0 = 1_704_205_800_000_000_000
    action, _, order_id, qty, _, _ = ex.on_prediction(t0, t0 + 1_000_000, 0, 0.6, 100.0, 0.02)
    assert action == hft_exec.Action.order
    sent = hft_exec.drain_events(ex)
    sent = sent[sent["type"] == hft_exec.EventType.order_sent]
    assert cfg.venue_names[int(sent["venue"][0])] == "cheap"
    assert ex.disconnect_venue(1) and not ex.venue_connected(1)
    ex.on_prediction(t0 + 60_000_000_000, t0 + 60_001_000_000, 0, 0.6, 101.0, 0.02)  # above the limit: no fill
    assert ex.working(0) == qty  # still counted: no second order for the same exposure
    assert ex.reconnect_venue(1, t0 + 120_000_000_000)
    ev = hft_exec.drain_events(ex)
    done = ev[ev["type"] == hft_exec.EventType.order_done]
    assert list(done["order_id"]) == [order_id]
    assert hft_exec.REASONS[int(done["reason"][0])] == "venue_unavailable"
    assert ex.working(0) == 0 and ex.venue_working_notional(1) == 0.0


def test_backtest_reports_the_fills_of_each_venue_with_its_own_fees(tmp_path):
    predictions = random_predictions(4_000, n_tickers=4, seed=3)
    result = run_backtest(predictions, BacktestConfig(venues=VENUES))
    fills = result.fills
    assert set(fills["venue"]) == {"cheap", "slow"}  # lit costs most: used only when the others cannot take it
    fee_bps = {"lit": 0.5, "cheap": 0.1, "slow": 0.3}
    expected = fills["notional"] * fills["venue"].map(fee_bps) * 1e-4
    assert np.allclose(fills["fee"], expected, atol=1e-4)
    venues = per_venue(fills)
    assert sum(v["fills"] for v in venues.values()) == len(fills)
    report = write_report(result, tmp_path)
    assert json.loads(report.files["metrics"].read_text())["venues"].keys() == venues.keys()
    # One venue, the same predictions: every fill on "paper" at the single exchange's fee, which costs more.
    single = run_backtest(predictions, BacktestConfig(venues=""))
    assert set(single.fills["venue"]) == {"paper"}
    assert single.fills["fee"].sum() / single.fills["notional"].sum() > fills["fee"].sum() / fills["notional"].sum()


def test_hft_execute_silence_and_answer_mark_a_venue_for_the_running_executor(client, redis_url, monkeypatch, tmp_path,
                                                                             capsys):
    from hft.cli import main
    from hft.schemas import RedisKeys

    monkeypatch.setenv("HFT_EXEC_VENUES", VENUES)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    key = RedisKeys().exec_silent_venues
    assert main(["execute", "silence", "--venue", "cheap", "--redis", redis_url]) == 0
    assert client.smembers(key) == {"cheap"}
    assert main(["execute", "answer", "--venue", "cheap", "--redis", redis_url]) == 0
    assert client.smembers(key) == set()
    assert main(["execute", "silence", "--venue", "dark", "--redis", redis_url]) != 0
    assert "not one of the venues of HFT_EXEC_VENUES (lit, cheap, slow)" in capsys.readouterr().err
    assert client.smembers(key) == set()
