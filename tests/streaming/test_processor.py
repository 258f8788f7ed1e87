"""The micro-batch processor against a real Redis: predictions for valid bars, DLQ with reasons for bad
ones, idempotent replays, no duplicate in the prediction stream, model swaps between batches."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import redis

from hft.features.reference import compute_features
from hft.schemas import coerce_bars
from hft.streaming.collectors import messages_from_bars
from hft.streaming.messages import encode_bar
from hft.streaming.processor import BatchProcessor, Record
from hft.streaming.store import RedisStore


class LinearModel:
    """A stand-in predictor with the FastPredictor interface: a fixed logistic function of two features."""

    features = ["ret_5", "rv_15"]

    def __init__(self, w=(-50.0, 10.0)):
        self.w = np.array(w)

    def predict_proba(self, x):
        return 1 / (1 + np.exp(-(x @ self.w)))


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return RedisStore(client)


def records(bars: pd.DataFrame, start_offset=0) -> list[Record]:
    msgs = messages_from_bars(coerce_bars(bars))
    return [Record(m.ticker.encode(), encode_bar(m), 0, start_offset + i) for i, m in enumerate(msgs)]


def make(store, model=None, known=None):
    dead, published = [], []
    proc = BatchProcessor(store, lambda: (model or LinearModel(), "3"), dead.extend, published.extend, known)
    return proc, dead, published


def test_processor_predicts_every_ready_bar_like_batch_features(store, bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08")
    proc, dead, published = make(store)
    recs = records(bars)
    for batch_id, i in enumerate(range(0, len(recs), 97)):
        proc.process(batch_id, recs[i : i + 97])
    assert dead == []
    feats = compute_features(bars, labelled_only=False)
    ready = feats.dropna(subset=LinearModel.features)
    stream = store.stream()
    assert len(stream) == len(ready) == len(published)
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in stream}
    expected = LinearModel().predict_proba(ready[LinearModel.features].to_numpy())
    keys = zip(ready["ticker"], ready["ts"].dt.as_unit("ms").astype("int64"))
    np.testing.assert_allclose([got[(t, int(ms))] for t, ms in keys], expected, rtol=1e-12)
    latest = store.latest("BBB")
    assert int(latest["bar_ts"]) == int(bars["ts"].max().value // 1_000_000) and latest["model_version"] == "3"
    assert store.r.ttl(store.latest_key("BBB")) > 0


@pytest.mark.parametrize("features", [("ret_5", "overnight_gap"), ("overnight_gap", "volume_tod")])
def test_processor_restarted_late_in_a_session_serves_what_it_read_of_earlier_sessions_from_redis(
        store, bars_factory, features):
    """The session's first bar left the stored window long before a restart, and the earlier sessions' bars
    long before that: the overnight gap and the volume norm come back from Redis."""
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-11")
    bars = bars.assign(volume=bars["volume"] * np.random.default_rng(1).uniform(0.2, 3.0, len(bars)))
    model = LinearModel(w=(40.0, 1.0))
    model.features = list(features)
    recs = records(bars)
    for batch_id, i in enumerate(range(0, len(recs), 37)):
        if batch_id in (0, 5, 30, 35, 45, 60):  # a start, then restarts in every session, past its 31st bar
            proc, dead, _ = make(store, model=model)
        proc.process(batch_id, recs[i : i + 37])
    assert dead == []
    ready = compute_features(bars, labelled_only=False).dropna(subset=model.features)
    later = ready[ready["date"] > pd.Timestamp("2024-03-07").date()]
    assert later["overnight_gap"].ne(0).all() and later["volume_tod"].ne(0).all()
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in store.stream()}
    keys = list(zip(ready["ticker"], ready["ts"].dt.as_unit("ms").astype("int64")))
    assert set(got) == set(keys)
    np.testing.assert_allclose([got[k] for k in keys], model.predict_proba(ready[model.features].to_numpy()),
                               rtol=1e-12)


def test_processor_restarted_reads_the_index_series_from_redis_for_a_batch_without_index_bars(store, bars_factory):
    """The index's bars came a little early (five at a time, before the ticker's bars of the same minutes): after a
    restart, a batch holding only AAA bars still reads SPY's stored bars, and every prediction equals the batch
    job's."""
    bars = bars_factory(tickers=("AAA", "SPY"), start="2024-03-07", end="2024-03-08")
    model = LinearModel(w=(40.0, 300.0))
    model.features = ["ret_5", "mkt_rel_15"]
    msgs = sorted(messages_from_bars(coerce_bars(bars)),
                  key=lambda m: (m.ts_ms // 300_000 * 300_000 - 1 if m.ticker == "SPY" else m.ts_ms, m.ticker))
    recs = [Record(m.ticker.encode(), encode_bar(m), 0, i) for i, m in enumerate(msgs)]
    restarts = aaa_only = 0
    for batch_id, i in enumerate(range(0, len(recs), 2)):
        batch = recs[i : i + 2]
        aaa_only += {r.key for r in batch} == {b"AAA"}
        if batch_id == 0 or (aaa_only % 15 == 1 and {r.key for r in batch} == {b"AAA"}):
            proc, dead, _ = make(store, model=model)  # a restart (nothing in memory) before a batch of AAA only
            restarts += 1
        proc.process(batch_id, batch)
    assert dead == [] and restarts > 5
    ready = compute_features(bars, labelled_only=False).dropna(subset=model.features)
    ready = ready[ready["ticker"] == "AAA"]
    assert ready["mkt_rel_15"].ne(0).mean() > 0.95  # read from SPY (cent prices: a few returns are equal)
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in store.stream() if e["ticker"] == "AAA"}
    keys = list(zip(ready["ticker"], ready["ts"].dt.as_unit("ms").astype("int64")))
    assert set(got) == set(keys)
    np.testing.assert_allclose([got[k] for k in keys], model.predict_proba(ready[model.features].to_numpy()),
                               rtol=1e-12)


def test_processor_reads_the_index_outside_the_universe_for_context_and_predicts_only_the_universe(
        store, bars_factory):
    bars = bars_factory(tickers=("AAA", "SPY"), start="2024-03-08", end="2024-03-08")
    model = LinearModel(w=(40.0, 300.0))
    model.features = ["ret_5", "mkt_rel_15"]
    proc, dead, _ = make(store, model=model, known=frozenset({"AAA"}))
    recs = records(bars)
    for batch_id, i in enumerate(range(0, len(recs), 50)):
        proc.process(batch_id, recs[i : i + 50])
    assert dead == []  # SPY's bars are not unknown tickers: the universe's features read them
    stream = store.stream()
    assert {e["ticker"] for e in stream} == {"AAA"}
    ready = compute_features(bars, labelled_only=False).dropna(subset=model.features)
    ready = ready[ready["ticker"] == "AAA"]
    got = {int(e["bar_ts"]): float(e["probability"]) for e in stream}
    assert sorted(got) == sorted(ready["ts"].dt.as_unit("ms").astype("int64"))
    np.testing.assert_allclose([got[int(ms)] for ms in ready["ts"].dt.as_unit("ms").astype("int64")],
                               model.predict_proba(ready[model.features].to_numpy()), rtol=1e-12)
    zzz = records(bars.assign(ticker="ZZZ").iloc[:1], start_offset=10**6)
    proc.process(99, zzz)
    assert [json.loads(v)["reason"] for _, v in dead] == ["unknown_ticker"]  # the universe still holds


def test_processor_replayed_batch_is_skipped_and_nothing_duplicated(store, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    proc, _, _ = make(store)
    recs = records(bars)
    proc.process(0, recs[:200])
    proc.process(1, recs[200:])
    n = len(store.stream())
    again = proc.process(1, recs[200:])  # Spark re-runs the last batch after a crash
    assert again.skipped and len(store.stream()) == n


def test_processor_crash_before_commit_leaves_no_trace_and_rerun_completes(store, bars_factory, monkeypatch):
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    proc, _, _ = make(store)
    recs = records(bars)
    proc.process(0, recs[:100])
    before = len(store.stream())

    def boom(*a, **k):
        raise ConnectionError("killed")

    with monkeypatch.context() as m:
        m.setattr(store, "commit", boom)
        with pytest.raises(ConnectionError):
            proc.process(1, recs[100:200])
    assert len(store.stream()) == before and store.last_batch() == 0
    proc.process(1, recs[100:200])
    proc.process(2, recs[200:])
    stream = store.stream()
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream) == len(recs) - 15  # rv_15 warm-up


def test_processor_bad_messages_go_to_dlq_with_reasons_and_stream_continues(store, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08").head(60)
    proc, dead, _ = make(store, known=["AAA"])
    good = records(bars)
    sample = json.loads(good[40].value)
    bad_values = {
        "nan": {**sample, "close": float("nan")},
        "zero": {**sample, "open": 0},
        "high_below_low": {**sample, "high": sample["low"] - 1},
        "unknown": {**sample, "ticker": "ZZZ"},
        "version": {**sample, "version": 9},
    }
    bad = [Record(b"AAA", json.dumps(v).encode(), 1, i) for i, v in enumerate(bad_values.values())]
    bad += [Record(b"AAA", b"{oops", 1, 10), Record(b"AAA", b"x" * 10_000, 1, 11), Record(b"AAA", None, 1, 12)]
    dup_and_old = [good[50], good[10]]  # duplicate of a bar in this batch, and one older than the latest
    result = proc.process(0, good + bad + [Record(r.key, r.value, 2, 100 + i) for i, r in enumerate(dup_and_old)])
    reasons = sorted(json.loads(v)["reason"] for _, v in dead)
    assert reasons == sorted(["non_finite", "bad_price", "inconsistent_ohlc", "unknown_ticker", "wrong_version",
                              "not_json", "oversized", "empty", "duplicate", "duplicate"])
    assert sum(result.rejected.values()) == len(dead) == 10
    assert len(store.stream()) == 60 - 15 and result.accepted == 60
    after = records(bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08").iloc[60:70], 60)
    assert proc.process(1, after).accepted == 10  # the stream goes on


def test_processor_swaps_model_between_batches(store, bars_factory):
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08").head(100)
    current = {"m": (LinearModel(), "1")}
    dead = []
    proc = BatchProcessor(store, lambda: current["m"], dead.extend)
    recs = records(bars)
    proc.process(0, recs[:50])
    current["m"] = (LinearModel((50.0, -10.0)), "2")
    proc.process(1, recs[50:])
    versions = [e["model_version"] for e in store.stream()]
    assert versions[0] == "1" and versions[-1] == "2" and versions.count("2") == 50


def test_processor_close_waits_for_published_predictions(store):
    flushed = []
    proc = BatchProcessor(store, lambda: (LinearModel(), "1"), [].extend, [].extend, flush=lambda: flushed.append(1))
    proc.close()
    assert flushed == [1]


def test_processor_lost_checkpoint_batch_ids_restart_at_zero_and_nothing_is_skipped_or_repeated(store, bars_factory):
    """A new checkpoint restarts Spark's batch ids at 0: the work is recognised by Kafka offsets instead."""
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    recs = records(bars)
    first, _, _ = make(store)
    for batch_id, i in enumerate(range(0, 200, 50)):
        first.process(batch_id, recs[i : i + 50])
    assert store.committed_offsets() == {("market.bars", 0): 200}
    restarted, _, _ = make(store)  # a new process on a new checkpoint: batch ids from 0 again
    replay = restarted.process(0, recs[150:260])  # from an older offset: the overlap is skipped, the rest done
    assert replay.replayed == 50 and not replay.skipped and replay.accepted == 60
    restarted.process(1, recs[260:])
    stream = store.stream()
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream) == len(recs) - 15
    assert store.committed_offsets() == {("market.bars", 0): len(recs)}


def test_processor_offset_gap_is_reported_not_silent(store, bars_factory, caplog):
    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    recs = records(bars)
    proc, _, _ = make(store)
    proc.process(0, recs[:50])
    with caplog.at_level("ERROR", logger="hft.streaming.processor"):
        result = proc.process(1, recs[80:100])
    assert result.offset_gaps == 30 and "offsets 50..79" in caplog.text


class PoisonModel(LinearModel):
    """Raises for any batch holding a row whose ret_5 is exactly the poison value."""

    poison = None

    def predict_proba(self, x):
        if self.poison is not None and np.any(x[:, 0] == self.poison):
            raise FloatingPointError("poisoned row")
        return super().predict_proba(x)


def test_processor_one_poison_row_goes_to_dlq_and_the_rest_of_the_batch_commits(store, bars_factory):
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08").head(200)
    model = PoisonModel()
    feats = compute_features(bars, labelled_only=False).dropna(subset=LinearModel.features)
    victim = feats.iloc[50]
    model.poison = victim["ret_5"]
    proc, dead, _ = make(store, model=model)
    result = proc.process(0, records(bars))
    assert [json.loads(v)["reason"] for _, v in dead] == ["processing_error"]
    assert json.loads(json.loads(dead[0][1])["value"])["ticker"] == victim["ticker"]
    assert len(store.stream()) == len(feats) - 1 == len(result.predictions)
    assert store.committed_offsets() == {("market.bars", 0): len(bars)}


def test_processor_features_that_raise_for_one_bar_isolate_it(store, bars_factory, monkeypatch):
    from hft.streaming.state import FeatureState

    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08").head(100)
    recs = records(bars)
    bad_ts = json.loads(recs[70].value)["ts"]
    real = FeatureState.features_and_windows

    def features(self, new, names):
        if any(b.ts_ms == bad_ts and b.ticker == json.loads(recs[70].value)["ticker"] for b in new):
            raise OverflowError("cannot compute")
        return real(self, new, names)

    monkeypatch.setattr(FeatureState, "features_and_windows", features)
    proc, dead, _ = make(store)
    result = proc.process(0, recs)
    assert [json.loads(v)["reason"] for _, v in dead] == ["processing_error"]
    assert result.accepted == 99 and result.rejected == {"processing_error": 1}
    more = proc.process(1, records(bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08").iloc[100:120], 100))
    assert more.accepted == 20 and not more.rejected  # the ticker is not blocked


_FIELDS = ["schema", "version", "ticker", "interval", "ts", "open", "high", "low", "close", "volume", "produced_ns"]
_HOSTILE = [None, True, 0, -1, 1.5, 2**63, -(2**63) - 1, 10**30, 1e308, -1e308, 5e-324, float("nan"), float("inf"),
            "", "A" * 300, "AAA", "1m", "2024-03-08T14:31:00Z", "9999-12-31T00:00:00Z", [], {}, [[[[]]]],
            {"a": [1, 2]}, 1709908260000, 1709908200000 + 10**12, 4102444800000, 946684800000]


@pytest.mark.parametrize("seed", range(3))
def test_processor_hostile_values_in_every_field_never_fail_the_batch(store, bars_factory, seed):
    """Random hostile values in every field of messages mixed with good bars: the batch commits, every
    message is accounted for (accepted or in the DLQ with a reason), and the good bars are all predicted."""
    import random

    rng = random.Random(seed)
    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08").head(120)
    good = records(bars)
    template = json.loads(good[-1].value)
    hostile = []
    for i in range(300):
        body = dict(template)
        for name in rng.sample(_FIELDS, rng.randint(1, 4)):
            body[name] = rng.choice(_HOSTILE)
        try:
            value = json.dumps(body).encode()
        except (ValueError, OverflowError):
            continue
        hostile.append(Record(b"AAA", value, 1, i))
    mixed = good + hostile
    rng.shuffle(mixed)
    proc, dead, _ = make(store)
    result = proc.process(0, mixed)
    assert result.messages == len(mixed) == result.accepted + sum(result.rejected.values())
    assert len(dead) == sum(result.rejected.values())
    ready = compute_features(bars, labelled_only=False).dropna(subset=LinearModel.features)
    got = {(e["ticker"], int(e["bar_ts"])) for e in store.stream()}
    assert set(zip(ready["ticker"], ready["ts"].dt.as_unit("ms").astype("int64"))) <= got
    later = records(bars_factory(tickers=("AAA", "BBB"), start="2024-03-08", end="2024-03-08").iloc[120:160], 120)
    assert proc.process(1, later).accepted == 40  # no ticker blocked by what came before


def _conv1d_predictor(bars, lookback=6):
    """A conv1d network over the real features (random weights: the test is about which rows it sees)."""
    from hft.features.definitions import FeatureSpec
    from hft.model.config import ModelConfig
    from hft.model.fast import FastPredictor
    from hft.model.network import Scaler, build_network

    names = FeatureSpec().feature_names()
    config = ModelConfig(architecture="conv1d", lookback=lookback, conv_kernel=3, conv_filters=4, widths=(8, 8, 8, 8))
    feats = compute_features(bars, labelled_only=False).dropna(subset=names)
    model = build_network(config, len(names))
    return FastPredictor.from_keras(model, config, names, Scaler.fit(feats[names].to_numpy()))


def test_processor_serves_a_conv1d_champion_from_the_ticker_window_like_the_backtest(store, bars_factory):
    from hft.backtest.predictions import features_for, score

    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    predictor = _conv1d_predictor(bars)
    proc, dead, _ = make(store, model=predictor)
    recs = records(bars)
    for batch_id, i in enumerate(range(0, len(recs), 37)):  # small batches: windows span batches and sessions
        if batch_id == 9:
            proc, dead, _ = make(store, model=predictor)  # a restart: the window comes back from Redis
        proc.process(batch_id, recs[i : i + 37])
    assert dead == []
    feats = features_for(bars)
    expected = score(feats, predictor)
    ok = np.isfinite(expected)
    want = dict(zip(zip(feats["ticker"][ok], feats["ts"][ok].dt.as_unit("ms").astype("int64")), expected[ok]))
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in store.stream()}
    assert got.keys() == want.keys() and len(got) > 0
    # the batch path runs the layers after the first in float32 (hft.model.fast): micro-batches of another size
    # may round an output's last float32 bit otherwise (seen: 2**-29 on a probability near 0.03); features are
    # equal to the batch job's (tests/streaming/test_messages_state.py)
    assert max(abs(got[k] - want[k]) for k in got) < 1e-7


def test_processor_stamps_each_stage_and_the_path_latency_is_observed_per_bar(store, bars_factory):
    """consumed <= features <= predicted <= committed (wall clock); record_batch observes, for every predicted
    bar, the time from its production by the collector to each stage."""
    import time
    from dataclasses import replace

    from prometheus_client import REGISTRY

    from hft.observability.metrics import record_batch

    bars = bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08")
    produced = time.time_ns() - 300_000_000  # sent by the collector 0.3 s ago
    msgs = [replace(m, produced_ns=produced) for m in messages_from_bars(coerce_bars(bars))]
    proc, dead, _ = make(store)
    result = proc.process(0, [Record(m.ticker.encode(), encode_bar(m), 0, i) for i, m in enumerate(msgs)])
    assert dead == [] and result.predictions
    stamps = [result.stage_ns[s] for s in ("consumed", "features", "predicted", "committed")]
    assert stamps == sorted(stamps) and produced < stamps[0]

    def count(stage):
        return REGISTRY.get_sample_value("hft_path_latency_seconds_count", {"stage": stage}) or 0.0

    def total(stage):
        return REGISTRY.get_sample_value("hft_path_latency_seconds_sum", {"stage": stage}) or 0.0

    before = {s: (count(s), total(s)) for s in result.stage_ns}
    record_batch(result)
    for stage, (n0, s0) in before.items():
        assert count(stage) - n0 == len(result.predictions)
        assert (total(stage) - s0) / len(result.predictions) >= 0.3, stage


def test_processor_measures_each_features_shift_from_the_champions_training_data(store, bars_factory):
    """A real FastPredictor whose scaler was fitted on these bars: the live shift stays small, and record_batch
    exports it per feature; served on a market whose returns are 20x as large, the features show a large shift."""
    from prometheus_client import REGISTRY

    from hft.observability.metrics import record_batch

    bars = bars_factory(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    predictor = _conv1d_predictor(bars)
    proc, _, _ = make(store, model=predictor)
    result = proc.process(0, records(bars))
    assert set(result.feature_shift) == set(predictor.features)
    calm = max(abs(v) for v in result.feature_shift.values())
    assert calm < 1.0, result.feature_shift
    record_batch(result)
    for name, value in result.feature_shift.items():
        assert REGISTRY.get_sample_value("hft_stream_feature_shift", {"feature": name}) == value
    # the same model on a market whose returns are 20x as volatile
    wild = bars_factory(tickers=("CCC",), start="2024-03-11", end="2024-03-11")
    ref = wild["close"].iloc[0]
    for col in ("open", "high", "low", "close"):
        wild[col] = ref * (1 + 20 * (wild[col] / ref - 1))
    wild["high"] = wild[["open", "high", "low", "close"]].max(axis=1)
    wild["low"] = wild[["open", "high", "low", "close"]].min(axis=1)
    proc2, _, _ = make(store, model=predictor)
    shifted = proc2.process(1, records(wild, 10_000)).feature_shift
    assert max(abs(v) for v in shifted.values()) > 2 * max(calm, 0.5), shifted
