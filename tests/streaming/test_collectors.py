"""The yfinance collector offline: real yfinance 1.7 over a requests.Session answered by the fake Yahoo.

Only completed bars are sent (never the minute still forming), none twice, and a restarted collector
resumes after the last bar Kafka acknowledged, catching up on what it missed."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import requests

from fake_yahoo import local_bars
from hft.data.sources.yfinance import YFinanceSource
from hft.streaming.collectors import YFinancePoller

DAY = "2024-03-20"  # New York is UTC-4 that day: 09:30 local = 13:30 UTC


class Clock:
    def __init__(self, text: str):
        self.t = pd.Timestamp(text, tz="UTC").to_pydatetime()

    def __call__(self) -> datetime:
        return self.t


def serve_until(yahoo, clock: Clock) -> None:
    """What Yahoo holds at ``clock``: every bar started by then, the one still forming with its volume so far."""
    local = clock().astimezone(timezone(timedelta(hours=-4)))
    minutes = [f"{9 + (30 + k) // 60:02d}:{(30 + k) % 60:02d}" for k in range(0, (local.hour * 60 + local.minute) - 570 + 1)]
    for ticker, price in (("SPY", 500.0), ("QQQ", 400.0)):
        frame = local_bars(DAY, minutes, price=price)
        frame["volume"] = [1000.0 + k for k in range(len(frame))]
        frame.iloc[-1, frame.columns.get_loc("volume")] = 7.0  # the forming minute: volume so far
        yahoo.bars[ticker] = frame


def poller(yahoo, clock: Clock, state, **options) -> YFinancePoller:
    session = requests.Session()
    session.mount("https://", yahoo)
    source = YFinanceSource(session=session, sleep=lambda s: None, now=clock)
    return YFinancePoller(["SPY", "QQQ"], poll_s=60, source=source, now=clock, state_path=state, **options)


def times(messages) -> list[tuple[str, str]]:
    return [(m.ticker, pd.Timestamp(m.ts_ms, unit="ms", tz="UTC").strftime("%H:%M")) for m in messages]


def test_poller_sends_completed_bars_once_and_never_the_forming_minute(yahoo, tmp_path):
    clock = Clock(f"{DAY} 13:37:30")
    serve_until(yahoo, clock)
    p = poller(yahoo, clock, tmp_path / "state.json")
    first = p.poll_once()
    assert sorted({t for _, t in times(first)}) == [f"13:{m}" for m in range(30, 37)]  # 13:37 is still forming
    assert all(m.volume != 7.0 for m in first) and len(first) == 14
    p.mark_sent(first)
    assert p.poll_once() == []  # nothing new: nothing twice
    clock.t += timedelta(minutes=1, seconds=40)  # 13:39:10
    serve_until(yahoo, clock)
    second = p.poll_once()
    assert times(second) == [("QQQ", "13:37"), ("SPY", "13:37"), ("QQQ", "13:38"), ("SPY", "13:38")]
    assert [m.volume for m in second[:2]] == [1007.0, 1007.0]  # the final volume, not the forming one


def test_poller_within_settle_time_holds_the_just_closed_bar(yahoo, tmp_path):
    clock = Clock(f"{DAY} 13:31:02")
    serve_until(yahoo, clock)
    assert poller(yahoo, clock, None).poll_once() == []  # 13:30 closed 2 s ago: Yahoo may still revise it
    clock.t += timedelta(seconds=5)
    assert times(poller(yahoo, clock, None).poll_once()) == [("QQQ", "13:30"), ("SPY", "13:30")]


def test_restarted_poller_resumes_after_the_acknowledged_bars_and_catches_up(yahoo, tmp_path):
    state = tmp_path / "collectors" / "yfinance-1m.json"
    clock = Clock(f"{DAY} 13:35:30")
    serve_until(yahoo, clock)
    first = poller(yahoo, clock, state, lookback=timedelta(minutes=5))
    sent = first.poll_once()
    first.mark_sent(sent)
    assert poller(yahoo, clock, state).poll_once() == []  # a second collector on the same state: nothing twice
    unmarked = poller(yahoo, clock, tmp_path / "other.json", lookback=timedelta(minutes=5))
    assert len(unmarked.poll_once()) == len(sent)  # what was never marked as acknowledged is sent again
    clock.t = pd.Timestamp(f"{DAY} 13:52:30", tz="UTC").to_pydatetime()  # down for 17 minutes
    serve_until(yahoo, clock)
    restarted = poller(yahoo, clock, state, lookback=timedelta(minutes=5))
    again = restarted.poll_once()
    assert sorted({t for _, t in times(again)}) == [f"13:{m}" for m in range(35, 52)]  # beyond the 5 min lookback
    assert not {(m.ticker, m.ts_ms) for m in again} & {(m.ticker, m.ts_ms) for m in sent}
