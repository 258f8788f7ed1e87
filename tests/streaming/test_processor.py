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
    after = records(bars_factory(tickers=("AAA",), start="2024-03-08", end="2024-03-08").iloc[60:70])
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
