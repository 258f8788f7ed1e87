"""The streaming job's ``tasks`` engine (hft.streaming.keyed) end to end on the real stack: per-ticker state in
Spark's state store (RocksDB), features and inference in Spark's tasks, predictions written from the tasks.
Same contract as the driver engine (tests/integration/test_streaming.py): every bar with full features
predicted once, with the champion's probability on the batch job's features, bad messages in the DLQ with their reasons, nothing lost
or written twice after a kill -9 with work outstanding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
import redis

from polling import until
from stream_fixtures import ready_count, stream_env, stream_stack

pytestmark = pytest.mark.integration

TICKERS = ["AAA", "BBB"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = stream_env(tmp_path_factory.mktemp("home"))
    with stream_stack(env, TICKERS) as config:
        yield env, config


def stream_cmd(idle: float, master: str = "local[2]", checkpoint: Path | None = None) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("hft")), "stream", "--engine", "tasks", "--master", master,
           "--tickers", ",".join(TICKERS), "--trigger", "500 milliseconds", "--metrics-port", "0",
           "--jvm-metrics-port", "0", "--stop-when-idle", str(idle), "--max-offsets", "200"]
    return cmd + (["--checkpoint", str(checkpoint)] if checkpoint else [])


def publish(config, messages, extra=()):
    from hft.streaming.collectors import publish as send
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import BARS_TOPIC

    result = send(messages, config.kafka_bootstrap)
    if extra:
        TopicSink(config.kafka_bootstrap, BARS_TOPIC).send(list(extra))
    assert result.failed == 0
    return result


def consume(config, topic: str, expect: int, timeout_s: float = 30.0) -> list:
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": config.kafka_bootstrap, "group.id": f"t-{time.time_ns()}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < expect and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            out.append(json.loads(msg.value()))
    c.close()
    return out


def expected_probabilities(env_vars, messages) -> dict:
    """(ticker, bar ms) -> the champion applied to the batch job's features."""
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.fast import FastPredictor
    from hft.streaming.state import bars_frame

    champion = FastPredictor.from_weights_file(registry.weights_path(registry.client(), "1", str(env_vars["HFT_HOME"])))
    feats = compute_features(bars_frame(messages), labelled_only=False).dropna(subset=champion.features)
    return dict(zip(zip(feats["ticker"], feats["ts"].dt.as_unit("ms").astype("int64")),
                    champion.predict_proba(feats[champion.features].to_numpy())))


def test_tasks_engine_predicts_every_bar_like_the_batch_job_and_sends_bad_messages_to_the_dlq(env):
    from hft.streaming import collectors
    from hft.streaming.messages import encode_bar
    from hft.streaming.store import RedisStore

    env_vars, config = env
    messages = collectors.synthetic(TICKERS, date(2024, 3, 8), date(2024, 3, 8))[:300]
    good, first = json.loads(encode_bar(messages[-1])), json.loads(encode_bar(messages[0]))
    future = [(b"AAA", json.dumps({**first, "ts": "2099-01-02T15:00:00Z"}).encode()),
              (b"AAA", json.dumps({**first, "ts": first["ts"] + 40 * 86_400_000}).encode())]
    bad = [(b"AAA", json.dumps({**good, "close": float("nan")}).encode()),
           (b"AAA", json.dumps({**good, "high": 0.001}).encode()),
           (b"ZZZ", json.dumps({**good, "ticker": "ZZZ"}).encode()),
           (b"AAA", json.dumps({**good, "version": 7}).encode()),
           (b"AAA", b"definitely not json"),
           (b"AAA", b"{" + b" " * 9000 + b"}"),
           # Spark's parser reads the first "ticker", ours the last: it must not enter AAA's state
           (b"AAA", encode_bar(messages[-1])[:-1] + b',"ticker":"BBB"}')]
    publish(config, messages[:20], future)
    publish(config, messages[20:], bad)
    proc = subprocess.run(stream_cmd(idle=10), env=env_vars, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]

    store = RedisStore(redis.Redis.from_url(config.redis_url, decode_responses=True))
    stream = store.stream()
    assert len(stream) == ready_count(messages)
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream)
    expected = expected_probabilities(env_vars, messages)
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in stream}
    assert got.keys() == expected.keys()
    # The features are the batch job's to 1e-9 (tests/streaming/test_keyed.py); the network's layers after the
    # first run in float32 (hft.model.fast), whose rounding depends on the batch's rows: here one ticker's.
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-6
    dlq = consume(config, "market.bars.dlq", expect=len(bad) + len(future))
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["non_finite", "inconsistent_ohlc", "unknown_ticker", "wrong_version", "not_json", "oversized",
         "implausible_time", "implausible_time", "invalid_field"])
    assert len(consume(config, "predictions", expect=len(stream))) == len(stream)
