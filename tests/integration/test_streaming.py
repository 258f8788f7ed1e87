"""End to end on the real stack: Kafka broker, Redis, spark-submit streaming job, MLflow champion.

Bars go through Kafka into the Spark job; predictions must appear in Redis for every bar with full
features, bad messages in the DLQ with their reasons, and a kill -9 of the job mid-stream followed by a
restart must neither lose nor duplicate a prediction.
"""

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

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TICKERS = ["AAA", "BBB"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Kafka + Redis on free ports, topics created, and a champion model in a sqlite MLflow store."""
    from hft import stack
    from hft.cli import stream_topics

    home = tmp_path_factory.mktemp("home")
    env = {
        **os.environ, "HFT_HOME": str(home), "HFT_KAFKA_PORT": str(_free_port()),
        "HFT_REDIS_PORT": str(_free_port()), "HFT_MLFLOW_PORT": str(_free_port()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "HFT_BARS_PARTITIONS": "2",
    }
    old = dict(os.environ)
    os.environ.update(env)
    config = stack.StackConfig.from_env()
    try:
        stack.up(config, ("kafka", "redis"))
        stack.ensure_topics(config.kafka_bootstrap, stream_topics())
        _train_champion(home)
        yield env, config
    finally:
        stack.down(config, ("kafka", "redis"))
        os.environ.clear()
        os.environ.update(old)


def _train_champion(home: Path) -> None:
    from datetime import datetime, timezone

    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.training import train

    bars = SyntheticSource().fetch(TICKERS, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 20, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars))
    cfg = ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64))
    reg = registry.log_training(train(frame, features, cfg), {}, None)
    registry.promote(reg.version, "test")


def _publish(config, messages, extra: list[tuple[bytes, bytes]] = ()):
    from hft.streaming.collectors import publish
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import BARS_TOPIC

    result = publish(messages, config.kafka_bootstrap)
    if extra:
        TopicSink(config.kafka_bootstrap, BARS_TOPIC).send(extra)
    return result


def _stream_cmd(env, idle: float) -> list[str]:
    return [str(Path(sys.executable).with_name("hft")), "stream", "--master", "local[2]", "--tickers", ",".join(TICKERS),
            "--trigger", "500 milliseconds", "--metrics-port", "0", "--stop-when-idle", str(idle)]


def _consume(config, topic: str, expect: int, timeout_s: float = 30.0) -> list[dict]:
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


def _ready_count(messages) -> int:
    """How many bars have every feature (the others are warming up at the session start)."""
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.streaming.state import bars_frame

    feats = compute_features(bars_frame(messages), labelled_only=False)
    return int(feats.dropna(subset=FeatureSpec().feature_names()).shape[0])


def test_stream_predicts_every_bar_and_sends_bad_messages_to_dlq(env):
    from hft.streaming import collectors
    from hft.streaming.messages import encode_bar
    from hft.streaming.store import RedisStore

    env_vars, config = env
    messages = collectors.synthetic(TICKERS, date(2024, 3, 8), date(2024, 3, 8))[:300]
    good = json.loads(encode_bar(messages[-1]))
    bad = [
        (b"AAA", json.dumps({**good, "close": float("nan")}).encode()),
        (b"AAA", json.dumps({**good, "high": 0.001}).encode()),
        (b"ZZZ", json.dumps({**good, "ticker": "ZZZ"}).encode()),
        (b"AAA", json.dumps({**good, "version": 7}).encode()),
        (b"AAA", b"definitely not json"),
        (b"AAA", b"{" + b" " * 9000 + b"}"),
    ]
    sent = _publish(config, messages, bad)
    assert sent.sent == 300 and sent.failed == 0
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    store = RedisStore(redis.Redis.from_url(config.redis_url, decode_responses=True))
    stream = store.stream()
    assert len(stream) == _ready_count(messages)
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream)
    for ticker in TICKERS:
        latest = store.latest(ticker)
        assert latest["model_version"] == "1" and 0 < float(latest["probability"]) < 1
    dlq = _consume(config, "market.bars.dlq", expect=len(bad))
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["non_finite", "inconsistent_ohlc", "unknown_ticker", "wrong_version", "not_json", "oversized"])
    predictions = _consume(config, "predictions", expect=len(stream))
    assert len(predictions) == len(stream)


def test_stream_kill_9_and_restart_loses_and_duplicates_nothing(env):
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(redis.Redis.from_url(config.redis_url, decode_responses=True))
    before = len(store.stream())
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))
    job = subprocess.Popen(_stream_cmd(env_vars, idle=0), env=env_vars, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _publish(config, messages[:400])
        deadline = time.monotonic() + 120
        while len(store.stream()) <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(store.stream()) > before, "the job produced nothing before the kill"
        _publish(config, messages[400:])
        time.sleep(1.0)
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # kill -9 the whole spark-submit tree mid-stream
        job.wait(30)
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    day = [e for e in store.stream()[before:]]
    assert len({(e["ticker"], e["bar_ts"]) for e in day}) == len(day) == _ready_count(messages)
