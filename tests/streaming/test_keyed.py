"""The tasks engine's per-ticker verdict (hft.streaming.keyed) without Spark: a ticker's state round-trips
through the JSON the state store keeps, batch after batch, and the features it yields equal the batch job's."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from hft.features.definitions import CONTEXT_MAX_LAG_BARS, CONTEXT_TRAIL_BARS, FeatureSpec
from hft.features.reference import compute_features
from hft.schemas import coerce_bars
from hft.streaming.collectors import messages_from_bars
from hft.streaming.keyed import verdict
from hft.streaming.messages import encode_bar
from hft.streaming.processor import Record


class Recording:
    """A predictor that keeps every row it is given and answers 0.5."""

    features = FeatureSpec().feature_names()

    def __init__(self):
        self.rows: list[np.ndarray] = []

    def predict_proba(self, x):
        self.rows.append(np.array(x))
        return np.full(len(x), 0.5)


def records(bars: pd.DataFrame) -> list[Record]:
    msgs = messages_from_bars(coerce_bars(bars))
    return [Record(m.ticker.encode(), encode_bar(m), 0, i) for i, m in enumerate(msgs)]


def run(ticker: str, recs: list[Record], model, size: int, stored: str | None = None):
    """``recs`` through :func:`verdict` in micro-batches of ``size``, the state stored between them."""
    predictions, dead = [], []
    for i in range(0, len(recs), size):
        p, d, new = verdict(ticker, recs[i:i + size], stored, lambda: (model, "7"), None)
        predictions += p
        dead += d
        stored = new if new is not None else stored
    return predictions, dead, stored


def test_a_tickers_features_through_the_stored_state_equal_the_batch_jobs_over_two_sessions(bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-07", end="2024-03-08")
    model = Recording()
    predictions, dead, stored = run("AAA", records(bars), model, size=37)
    assert dead == []
    feats = compute_features(bars, labelled_only=False).dropna(subset=Recording.features)
    assert [p.ts_ms for p in predictions] == list(feats["ts"].dt.as_unit("ms").astype("int64"))
    np.testing.assert_allclose(np.concatenate(model.rows), feats[Recording.features].to_numpy(), rtol=1e-9, atol=1e-12)
    assert len(json.loads(stored)["bars"]["1m"]) == FeatureSpec().max_lookback  # only what a window needs


def test_a_group_reads_the_market_context_routed_to_it_like_the_batch_job_over_what_had_arrived(bars_factory):
    """The index's messages copied to AAA's group (context): AAA's features equal the batch job's over the bars that
    had arrived by each micro-batch's end, through the stored state; the copies get no prediction and no DLQ record
    (the originals are judged in SPY's own group), and the stored state keeps SPY's bars apart from AAA's."""
    from hft.streaming.keyed import context_routes

    assert context_routes(["AAA", "SPY", "BBB"]) == [("SPY", "AAA"), ("SPY", "BBB")]
    bars = coerce_bars(bars_factory(tickers=("AAA", "SPY"), start="2024-03-07", end="2024-03-08"))
    bars = bars.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    recs = records(bars)  # the same order: time, SPY after AAA at each minute
    model = Recording()
    model.features = ["ret_5", "mkt_ret_1", "mkt_rv_30", "mkt_rel_15"]
    stored, arrived, checked = None, [], 0
    rng = np.random.default_rng(3)
    i = 0
    while i < len(recs):
        n = int(rng.integers(1, 30))
        batch = recs[i : i + n]
        mine = [r for r in batch if r.key == b"AAA"]
        copies = [r for r in batch if r.key == b"SPY"] + [Record(b"SPY", b"not json", 0, 10**6 + i)]
        before = len(model.rows)
        p, dead, new = verdict("AAA", mine, stored, lambda: (model, "7"), None, context=copies)
        assert dead == [] and all(x.ticker == "AAA" for x in p)
        stored = new if new is not None else stored
        arrived += batch
        i += n
        if p:
            seen = compute_features(bars.iloc[: len(arrived)], labelled_only=False)
            seen = seen.set_index(["ticker", "ts"]).loc[[("AAA", pd.Timestamp(x.ts_ms, unit="ms", tz="UTC")) for x in p]]
            got = np.concatenate(model.rows[before:])
            np.testing.assert_allclose(got, seen[model.features].to_numpy(), rtol=1e-9, atol=1e-12)
            checked += len(p)
    assert checked > 600
    doc = json.loads(stored)
    assert set(doc["bars"]) == {"1m"} and set(doc["context"]) == {"SPY"}
    assert doc["context"]["SPY"]["1m"][-1][0] == json.loads(recs[-1].value)["ts"]
    # the index keeps the bars a ticker trailing it reads
    assert len(doc["context"]["SPY"]["1m"]) == FeatureSpec().max_lookback + CONTEXT_MAX_LAG_BARS + CONTEXT_TRAIL_BARS
    # the index's own group, outside the universe: its bars are read (state), never predicted nor refused
    spy = [r for r in recs if r.key == b"SPY"][:80]
    p, dead, spy_state = verdict("SPY", spy, None, lambda: (model, "7"), frozenset({"AAA"}))
    assert p == [] and dead == [] and len(json.loads(spy_state)["bars"]["1m"]) == 80


def test_a_champion_reading_the_market_context_needs_a_universe_in_the_tasks_engine():
    from hft.errors import UserError
    from hft.streaming.keyed import check_universe

    with pytest.raises(UserError, match="needs --tickers.*index"):
        check_universe(["ret_5", "mkt_rel_15"], None)
    check_universe(["ret_5", "mkt_rel_15"], ["AAA"])
    check_universe(["ret_5", "rv_30"], None)  # no context read: any ticker is served


def test_a_champion_reading_context_features_the_stream_does_not_compute_is_refused_at_start():
    from hft.errors import UserError
    from hft.streaming.processor import check_features

    sectors = FeatureSpec(sectors=(("AAA", "XLK"),))
    with pytest.raises(UserError, match="reads sec_ret_1, sec_rel_15.*HFT_SECTORS"):
        check_features(["ret_5", "mkt_rel_15", "sec_ret_1", "sec_rel_15"], FeatureSpec())
    with pytest.raises(UserError, match="reads mkt_rel_15"):
        check_features(["ret_5", "mkt_rel_15"], FeatureSpec(market_ticker=None))
    check_features(["ret_5", "mkt_rel_15", "sec_ret_1", "sec_rel_15"], sectors)
    check_features(["ret_5", "rv_30"], FeatureSpec(market_ticker=None))
    # the tasks engine's champion check (at start and on every reload in the workers): both
    from hft.streaming.keyed import servable

    reads = lambda *names: type("Predictor", (), {"features": list(names)})()  # noqa: E731
    with pytest.raises(UserError, match="reads sec_ret_1"):
        servable(FeatureSpec(), ["AAA"])(reads("ret_5", "sec_ret_1"))
    with pytest.raises(UserError, match="needs --tickers"):
        servable(sectors, None)(reads("ret_5", "sec_ret_1"))
    servable(sectors, ["AAA"])(reads("ret_5", "sec_ret_1"))


def test_the_stateful_processor_computes_the_features_of_its_spec_sector_context_included(bars_factory):
    """The spec given to TickerProcessor (the driver's FeatureSpec.from_env()) is the one its groups compute: AAA's
    sector context from the XLK copies routed to it, as the batch job computes it."""
    from pyspark.sql.streaming.tws_tester import TwsTester

    from hft.streaming import keyed

    spec = FeatureSpec(sectors=(("AAA", "XLK"),))
    bars = coerce_bars(bars_factory(tickers=("AAA", "SPY", "XLK"), start="2024-03-08", end="2024-03-08"))
    bars = bars.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    recs = records(bars)
    frame = pd.DataFrame({"key": [r.key for r in recs], "value": [r.value for r in recs], "topic": "market.bars",
                          "partition": 0, "offset": range(len(recs)), "ticker": "AAA",
                          "context": [r.key != b"AAA" for r in recs]})
    model = Recording()
    model.features = ["ret_5", "mkt_rel_15", "sec_ret_1", "sec_rv_30", "sec_rel_15"]
    key = ("test://", 5.0, spec, frozenset({"AAA"}))  # the worker's champion for this spec and universe
    keyed._models[key] = lambda: (model, "7")
    try:
        out = TwsTester(keyed.TickerProcessor(["AAA"], "test://", spec=spec)).testInPandas("AAA", frame)
    finally:
        del keyed._models[key]
    assert set(out["kind"]) == {"prediction"} and len(out) > 300
    expected = compute_features(bars, spec, labelled_only=False).set_index(["ticker", "ts"])
    expected = expected.loc[[("AAA", pd.Timestamp(t, unit="ms", tz="UTC")) for t in out["ts_ms"]], model.features]
    np.testing.assert_allclose(np.concatenate(model.rows), expected.to_numpy(), rtol=1e-9, atol=1e-12)
    assert expected["sec_ret_1"].ne(0).sum() > 300


@pytest.mark.spark
def test_the_index_messages_are_copied_to_every_group_that_reads_them(spark):
    from hft.streaming.keyed import routed

    stream = spark.createDataFrame([(b"SPY", b'{"ticker": "SPY", "ts": 1}'), (b"AAA", b'{"ticker": "AAA", "ts": 1}'),
                                    (b"X", b"not json")], "key BINARY, value BINARY")
    rows = sorted((r.ticker, r.context, r.key) for r in routed(stream, ["AAA", "BBB", "SPY"]).collect())
    assert rows == [("", False, b"X"), ("AAA", False, b"AAA"), ("AAA", True, b"SPY"), ("BBB", True, b"SPY"),
                    ("SPY", False, b"SPY")]


def test_bars_of_another_ticker_and_undecodable_messages_go_to_the_dlq_and_leave_the_state_alone(bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08")
    recs = records(bars)
    aaa = [r for r in recs if r.key == b"AAA"][:50]
    _, _, stored = run("AAA", aaa, Recording(), size=50)
    bbb = next(r for r in recs if r.key == b"BBB")
    p, dead, new = verdict("AAA", [bbb, Record(b"AAA", b"not json", 0, 999)], stored, lambda: (Recording(), "7"), None)
    assert p == [] and new is None, "the state changed"
    assert [json.loads(v)["reason"] for _, v in dead] == ["invalid_field", "not_json"]
    assert "ambiguous ticker" in json.loads(dead[0][1])["detail"]


def test_a_real_jump_is_confirmed_across_micro_batches(bars_factory):
    """The run of far-ahead bars that confirms a jump is part of the stored state: one bar per micro-batch."""
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08").iloc[:5]
    later = bars.copy()
    later["ts"] = later["ts"] + pd.Timedelta(days=30)
    recs = records(pd.concat([bars, later]))
    predictions, dead, stored = run("AAA", recs, Recording(), size=1)
    assert [json.loads(v)["reason"] for _, v in dead] == ["implausible_time"] * 3
    assert json.loads(stored)["bars"]["1m"][-1][0] == int(later["ts"].iloc[-1].value // 1_000_000)


def test_the_stateful_processor_keeps_its_state_and_says_nothing_while_bars_warm_up(bars_factory):
    """TickerProcessor as transformWithStateInPandas drives it (pyspark's TwsTester, no Spark): a micro-batch of
    warming-up bars yields no frame at all (an empty one failed Spark's Arrow conversion), the next its rows."""
    from pyspark.sql.streaming.tws_tester import TwsTester

    from hft.streaming import keyed

    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    recs = records(bars)
    frame = lambda rs: pd.DataFrame({"key": [r.key for r in rs], "value": [r.value for r in rs],  # noqa: E731
                                     "topic": [r.topic for r in rs], "partition": [r.partition for r in rs],
                                     "offset": [r.offset for r in rs], "ticker": "AAA", "context": False})
    key = ("test://", 5.0, FeatureSpec(), frozenset({"AAA"}))
    keyed._models[key] = lambda: (Recording(), "7")
    try:
        processor = keyed.TickerProcessor(["AAA"], "test://")
        tester = TwsTester(processor)
        warming = FeatureSpec().max_lookback - 1
        tester.handle.setGroupingKey("AAA")
        assert list(processor.handleInputRows(("AAA",), iter([frame(recs[:warming])]), None)) == []
        out = tester.testInPandas("AAA", frame(recs[warming:warming + 40] + [Record(b"AAA", b"[]", 0, 10**6)]))
    finally:
        del keyed._models[key]
    assert list(out["kind"]) == ["dlq"] + ["prediction"] * 40 and out["reason"].iloc[0] == "not_json"
    assert list(out["ts_ms"].iloc[1:]) == [json.loads(r.value)["ts"] for r in recs[warming:warming + 40]]
    stored = json.loads(tester.peekValueState("feature_state", "AAA")[0])
    assert stored["bars"]["1m"][-1][0] == json.loads(recs[warming + 39].value)["ts"]
