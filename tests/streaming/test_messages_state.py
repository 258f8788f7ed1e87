"""Message codec (every bad-input case has its reason) and streaming feature state == batch features."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from hft.features.reference import compute_features
from hft.schemas import coerce_bars
from hft.streaming.messages import BarMessage, MessageError, decode_bar, dlq_record, encode_bar
from hft.streaming.state import FeatureState

GOOD = {"schema": "hft.bar", "version": 1, "ticker": "AAA", "interval": "1m", "ts": "2024-03-08T14:30:00Z",
        "open": 10.0, "high": 10.5, "low": 9.5, "close": 10.2, "volume": 100}


def raw(**changes) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def test_decode_good_message_roundtrip():
    bar = decode_bar(raw())
    assert bar.ticker == "AAA" and bar.ts_ms == 1709908200000 and bar.volume == 100
    assert decode_bar(encode_bar(bar)) == bar
    whole = decode_bar(raw(volume=250, ts=1709908200000, open=10, produced_ns=7))
    assert (whole.volume, whole.open, whole.produced_ns) == (250.0, 10.0, 7) and type(whole.volume) is float


def test_decode_fractional_volume_as_yahoo_sends_it():
    bar = decode_bar(raw(volume=88305.015766))
    assert bar.volume == 88305.015766
    assert decode_bar(encode_bar(bar)) == bar


@pytest.mark.parametrize(
    "value, reason",
    [
        (raw(close=float("nan")), "non_finite"),
        (raw(close=float("inf")), "non_finite"),
        (raw(open=0.0), "bad_price"),
        (raw(low=-1.0), "bad_price"),
        (raw(high=9.0), "inconsistent_ohlc"),
        (raw(version=2), "wrong_version"),
        (raw(version=True), "wrong_version"),
        (raw(version=1.0), "wrong_version"),
        (raw(schema="other"), "wrong_schema"),
        (b"not json at all", "not_json"),
        (b"[1, 2]", "not_json"),
        (b"\xff\xfe", "not_json"),
        (raw(note="x" * 5000), "oversized"),
        (None, "empty"),
        (raw(ticker="bad ticker"), "invalid_field"),
        (raw(volume=-3), "invalid_field"),
        (raw(volume=float("inf")), "non_finite"),
        (raw(volume=1e16), "invalid_field"),
        (raw(volume=10**400), "invalid_field"),
        (raw(open=10**400), "invalid_field"),
        (raw(low=1e-9), "bad_price"),
        (raw(ts=10**30), "implausible_time"),
        (raw(ts=-(10**30)), "implausible_time"),
        (raw(ts=0), "implausible_time"),
        (raw(ts="1970-01-01T00:00:00Z"), "implausible_time"),
        (raw(ts="9999-12-31T23:59:00Z"), "implausible_time"),
        (raw(produced_ns=10**30), "invalid_field"),
        (raw(produced_ns=-1), "invalid_field"),
        (b"[" * 2000 + b"]" * 2000, "not_json"),
        (raw(ts="2024-03-08T14:30:30Z"), "invalid_field"),
        (raw(ts="yesterday"), "invalid_field"),
        (raw(interval="1d"), "invalid_field"),
        (raw(close="10.2"), "invalid_field"),
        (raw(close=True), "invalid_field"),
        (raw(volume=None), "invalid_field"),
        (raw(ts=True), "invalid_field"),
        (raw(produced_ns=1.5), "invalid_field"),
    ],
    ids=["nan", "inf", "zero_price", "negative_price", "high_below_close", "wrong_version",
         "version_true", "version_float", "wrong_schema", "not_json", "json_array", "binary", "oversized", "empty",
         "bad_ticker", "negative_volume",
         "inf_volume", "huge_volume", "huge_int_volume", "huge_int_price", "tiny_price", "ts_huge_int",
         "ts_huge_negative", "ts_epoch", "ts_1970", "ts_year_9999", "produced_ns_huge", "produced_ns_negative",
         "deeply_nested", "off_minute", "bad_ts", "daily_interval", "string_price",
         "bool_price", "null_volume", "bool_ts", "float_produced_ns"],
)
def test_decode_bad_message_raises_with_reason(value, reason):
    with pytest.raises(MessageError) as err:
        decode_bar(value)
    assert err.value.reason == reason


def test_decode_bar_far_ahead_of_the_wall_clock_is_implausible():
    now = 1709908200000  # 2024-03-08T14:30Z
    assert decode_bar(raw(ts=now + 10 * 60_000), now_ms=now).ts_ms == now + 10 * 60_000  # clock skew tolerated
    with pytest.raises(MessageError) as err:
        decode_bar(raw(ts=now + 24 * 3_600_000), now_ms=now)
    assert err.value.reason == "implausible_time" and "ahead of the wall clock" in err.value.detail


def test_decode_unknown_ticker_rejected_against_universe():
    with pytest.raises(MessageError) as err:
        decode_bar(raw(ticker="ZZZ"), known_tickers=frozenset({"AAA"}))
    assert err.value.reason == "unknown_ticker"


def test_dlq_record_keeps_original_bytes():
    rec = json.loads(dlq_record("not_json", "x", "market.bars", 0, 7, b"AAA", b"\xff\x00"))
    assert rec["reason"] == "not_json" and rec["offset"] == 7 and "value_b64" in rec
    rec = json.loads(dlq_record("bad_price", "x", "market.bars", 1, 8, None, b'{"a": 1}'))
    assert rec["value"] == '{"a": 1}'


def _messages(bars: pd.DataFrame) -> list[BarMessage]:
    from hft.streaming.collectors import messages_from_bars

    return messages_from_bars(coerce_bars(bars))


def test_state_refuses_duplicates_and_out_of_order():
    state = FeatureState()
    a = decode_bar(raw())
    b = decode_bar(raw(ts="2024-03-08T14:31:00Z"))
    accepted, refused = state.admit([a, b, a])
    assert accepted == [a, b] and [r[1] for r in refused] == ["duplicate"]
    state.features(accepted)
    older = decode_bar(raw(ts="2024-03-08T14:29:00Z"))
    accepted, refused = state.admit([older, b])
    assert accepted == [] and [r[1] for r in refused] == ["out_of_order", "duplicate"]


def _minutes(first: BarMessage, *offsets_min: int) -> list[BarMessage]:
    from dataclasses import replace

    return [replace(first, ts_ms=first.ts_ms + m * 60_000) for m in offsets_min]


def test_state_bar_far_in_the_future_is_refused_and_does_not_block_the_ticker():
    state = FeatureState()
    a, b = _minutes(decode_bar(raw()), 0, 1)
    state.features(state.admit([a, b])[0])
    future = _minutes(a, 365 * 24 * 60)[0]  # stamped a year ahead
    accepted, refused = state.admit([future])
    assert accepted == [] and [(r[0], r[1]) for r in refused] == [(future, "implausible_time")]
    assert "days ahead of its ticker's newest bar" in refused[0][2]
    state.features(accepted)
    later = _minutes(a, 2, 3)  # the real bars keep flowing
    accepted, refused = state.admit(later)
    assert accepted == later and refused == []


def test_state_new_ticker_far_ahead_of_every_other_ticker_is_refused():
    state = FeatureState()
    a = decode_bar(raw())
    state.features(state.admit([a])[0])
    stranger = decode_bar(raw(ticker="BBB", ts="2025-06-02T14:30:00Z"))
    accepted, refused = state.admit([stranger])
    assert accepted == [] and refused[0][1] == "implausible_time" and "any ticker" in refused[0][2]


def test_state_real_jump_confirmed_by_consistent_far_ahead_bars():
    state = FeatureState(confirm_ahead=3)
    a = decode_bar(raw())
    state.features(state.admit([a])[0])
    jump = _minutes(a, 60 * 24 * 30, 60 * 24 * 30 + 1, 60 * 24 * 30 + 2, 60 * 24 * 30 + 3)  # back after a month
    accepted, refused = state.admit(jump)
    assert [r[1] for r in refused] == ["implausible_time"] * 3 and accepted == jump[3:]
    # an isolated far-ahead bar between normal ones never confirms
    state = FeatureState(confirm_ahead=3)
    state.features(state.admit([a])[0])
    for k in range(1, 6):
        bogus, real = _minutes(a, 10**6 + k), _minutes(a, k)
        accepted, refused = state.admit(bogus + real)
        assert accepted == real and refused[0][0] == bogus[0]
        state.features(accepted)


def test_streaming_features_equal_batch_features_in_small_batches(bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    rng = np.random.default_rng(5)
    bars = bars[rng.random(len(bars)) > 0.02]  # missing bars too
    bars = bars.assign(volume=bars["volume"] * rng.uniform(0.5, 1.5, len(bars)))  # fractional, as Yahoo sends
    expected = compute_features(bars, labelled_only=False).set_index(["ticker", "ts"])
    state = FeatureState()
    msgs = _messages(bars)
    got = []
    i = 0
    while i < len(msgs):  # micro-batches of varying size, across the session boundary
        n = int(rng.integers(1, 40))
        accepted, refused = state.admit(msgs[i : i + n])
        assert not refused
        got.append(state.features(accepted))
        i += n
    got = pd.concat(got).set_index(["ticker", "ts"])
    names = [c for c in expected.columns if c not in ("date", "interval", "fwd_ret", "label", "volume")]
    exp = expected.loc[got.index, names]
    for col in names:
        x, y = exp[col].to_numpy(float), got[col].to_numpy(float)
        assert (np.isnan(x) == np.isnan(y)).all(), col
        ok = ~np.isnan(x)
        np.testing.assert_allclose(y[ok], x[ok], rtol=1e-9, atol=1e-12, err_msg=col)
    assert len(got) == len(bars) and not math.isnan(got["rv_30"].iloc[-1])


def _arrival(msgs: list[BarMessage], late: str, bars_late: int) -> list[BarMessage]:
    """``msgs`` (time order) with the bars of ``late`` delivered ``bars_late`` minutes after their time."""
    delay = bars_late * 60_000 + 1
    return sorted(msgs, key=lambda m: (m.ts_ms + (delay if m.ticker == late else 0), m.ticker))


@pytest.mark.parametrize("who, late", [("SPY", 0), ("SPY", 2), ("AAA", 45)])
def test_a_bar_sees_the_market_context_that_had_arrived_and_equals_the_batch_on_those_bars(bars_factory, who, late):
    """Cross-ticker features in the stream: each bar's row equals the batch job's over the bars that had arrived by
    the end of its micro-batch (the index's bar of the same minute when it came first, an older one when late; a
    ticker 45 minutes behind the index still finds the index's bars of its minutes)."""
    from hft.features.definitions import FeatureSpec

    spec = FeatureSpec(sectors=(("AAA", "XLK"),))
    bars = bars_factory(tickers=("AAA", "BBB", "SPY", "XLK"), start="2024-03-07", end="2024-03-08")
    rng = np.random.default_rng(7)
    bars = coerce_bars(bars[rng.random(len(bars)) > 0.02])  # missing bars too
    msgs = _arrival(_messages(bars), who, late)
    full = compute_features(bars, spec, labelled_only=False).set_index(["ticker", "ts"])
    state = FeatureState(spec)
    names = spec.feature_names()
    arrived: list[BarMessage] = []
    differs = rows = i = 0
    while i < len(msgs):
        n = int(rng.integers(1, 60))
        accepted, refused = state.admit(msgs[i : i + n])
        assert not refused
        got = state.features(accepted).set_index(["ticker", "ts"])
        arrived += accepted
        i += n
        if rng.random() > 0.25 and i < len(msgs):  # most batches checked: the batch job over what had arrived
            continue
        seen = compute_features(_frame(arrived), spec, labelled_only=False)
        exp = seen.set_index(["ticker", "ts"]).loc[got.index, names]
        for col in names:
            x, y = exp[col].to_numpy(float), got[col].to_numpy(float)
            assert (np.isnan(x) == np.isnan(y)).all(), col
            ok = ~np.isnan(x)
            np.testing.assert_allclose(y[ok], x[ok], rtol=1e-9, atol=1e-12, err_msg=col)
        after = full.loc[got.index, "mkt_ret_1"].to_numpy(float)
        differs += int((~np.isclose(after, got["mkt_ret_1"].to_numpy(float), equal_nan=True)).sum())
        rows += len(got)
    assert rows > 500
    if who == "SPY" and late:  # the index came late: many bars read an older one than the batch job over all does
        assert differs > 100
    else:  # in time: only bars whose micro-batch ended before the index's bar of the minute came
        assert differs < rows * 0.1


def _frame(msgs: list[BarMessage]) -> pd.DataFrame:
    from hft.streaming.state import bars_frame

    return coerce_bars(bars_frame(msgs))


def test_a_features_call_that_raises_leaves_the_state_as_it_was_and_the_retry_counts_each_bar_once(bars_factory):
    """The processor retries a failed batch bar by bar: the failed call must not have added the bars' volume
    or moved a session gap (they would count twice, and a bar sent to the DLQ would count at all)."""
    import copy

    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    bars = bars.assign(volume=bars["volume"] * np.random.default_rng(6).uniform(0.5, 1.5, len(bars)))
    msgs = _messages(bars)
    state = FeatureState()
    state.features(state.admit(msgs[:790])[0])  # the first session and the second one's first bars
    before = copy.deepcopy((state.volume, state.gaps, state.bars))
    batch = state.admit(msgs[790:840])[0]
    with pytest.raises(KeyError):
        state.features_and_windows(batch, ["no_such_feature"])  # fails after the totals were updated
    assert (state.volume, state.gaps, state.bars) == before
    got = pd.concat([state.features([bar]) for bar in batch] + [state.features(state.admit(msgs[840:])[0])])
    expected = compute_features(bars, labelled_only=False).set_index(["ticker", "ts"])
    got = got.set_index(["ticker", "ts"])
    for col in ("volume_tod", "overnight_gap"):
        np.testing.assert_allclose(got[col].to_numpy(), expected.loc[got.index, col].to_numpy(), rtol=1e-9, atol=1e-12)
    assert (got["volume_tod"] != 0).all()


def test_paced_follows_bar_times_and_skips_closed_hours():
    from hft.streaming.collectors import paced

    t = {"now": 0.0}
    sleeps = []

    def sleep(s):
        sleeps.append(round(s, 6))
        t["now"] += s

    base = 1709908200000
    msgs = [BarMessage("AAA", "1m", base + k * 60_000, 1, 1, 1, 1, 1) for k in range(3)]
    msgs.append(BarMessage("AAA", "1m", base + 18 * 3600_000, 1, 1, 1, 1, 1))  # next morning
    assert list(paced(msgs, 60.0, sleep=sleep, clock=lambda: t["now"])) == msgs
    assert sleeps == [1.0, 1.0, 5.0]  # a minute of bars per second; the night counts as 5 minutes
    sleeps.clear()
    list(paced(msgs, 0, sleep=sleep, clock=lambda: t["now"]))
    assert sleeps == []


def test_decode_fast_path_and_general_path_agree_on_hostile_messages():
    """decode_bar accepts well-typed in-range bars on a fast path and hands every other message to the
    general one: over random hostile values in every field, both give the same bar or the same reason."""
    import random

    from hft.streaming import messages

    fields = ["schema", "version", "ticker", "interval", "ts", "open", "high", "low", "close", "volume", "produced_ns"]
    hostile = [None, True, False, 0, -1, 1, 1.0, 1.5, 2**63, 2**63 - 1, 2**64, -(2**63) - 1, 10**30, 1e308, -1e308,
               5e-324, float("nan"), float("inf"), "", "A" * 300, "AAA", "aaa", "1m", "5m", "1d", "hft.bar",
               "2024-03-08T14:31:00Z", [], {}, [[[]]], 1709908260000, 1709908230000, 4102444800000, 946684800000,
               946684740000, 1e-4, 1e7, 1e15, 1e15 + 1, 10.0, 10.5, 9.5, 11.0]
    rng = random.Random(7)
    now_ms = 1_709_950_000_000
    template = json.loads(raw(ts=1_709_908_200_000, produced_ns=1_709_908_260_000_000_000))
    outcomes = {"fast": 0, "refused": 0}
    for _ in range(4000):
        body = dict(template)
        for name in rng.sample(fields, rng.randint(1, 3)):
            if rng.random() < 0.1:
                body.pop(name, None)
            else:
                body[name] = rng.choice(hostile)
        try:
            value = json.dumps(body).encode()
        except (ValueError, OverflowError):
            continue
        known = rng.choice([None, frozenset({"AAA"}), frozenset({"BBB"})])
        try:
            expected = messages._decode_general(value, known, now_ms)
        except MessageError as err:
            with pytest.raises(MessageError) as got:
                decode_bar(value, known, now_ms)
            assert got.value.reason == err.reason, value
            outcomes["refused"] += 1
            continue
        assert decode_bar(value, known, now_ms) == expected, value
        outcomes["fast"] += 1
    assert outcomes["fast"] > 50 and outcomes["refused"] > 1000, outcomes


def test_decode_well_typed_bar_takes_the_fast_path(monkeypatch):
    from hft.streaming import messages

    value = raw(ts=1_709_908_200_000, produced_ns=1_709_908_260_000_000_000, volume=88305.015766)
    expected = decode_bar(value)
    monkeypatch.setattr(messages, "_decode_general", lambda *a: pytest.fail("general path taken"))
    assert decode_bar(value) == expected and expected.volume == 88305.015766
