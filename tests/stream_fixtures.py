"""What the end-to-end stream tests share: a champion model trained on the synthetic market, and how many
bars of a day have every feature (so how many predictions the stream must write)."""

from __future__ import annotations

import json
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from ports import free_port


def train_champion(home: Path, tickers: list[str]) -> None:
    """Version 1 (the champion) and version 2 (not promoted) of a tiny model, in the MLflow store the
    environment names (``MLFLOW_TRACKING_URI``); ``home`` is the test's HFT_HOME."""
    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.training import train

    bars = SyntheticSource().fetch(tickers, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 20, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars))
    cfg = ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64))
    first = registry.log_training(train(frame, features, cfg), {}, None)
    registry.promote(first.version, "test")
    registry.log_training(train(frame, features, ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64),
                                                             seed=5)), {}, None)


def ready_count(messages) -> int:
    """How many bars have every feature (the others are warming up at the session start)."""
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.streaming.state import bars_frame

    feats = compute_features(bars_frame(messages), labelled_only=False)
    return int(feats.dropna(subset=FeatureSpec().feature_names()).shape[0])


def with_history(messages, seen=()) -> list:
    """The bars a stream that consumed ``seen`` (every bar published to it before, in order; may include
    ``messages``) holds when ``messages`` arrive: once each. A feature reading an earlier session (the overnight
    gap) needs them: the stream's state has them."""
    out = {}
    for m in [*seen, *messages]:
        out.setdefault((m.ticker, m.interval, m.ts_ms), m)
    return list(out.values())


def expected_probabilities(home, messages, seen=()) -> dict:
    """(ticker, bar ms) -> the champion (version 1 of :func:`train_champion`) applied to the batch job's features
    of ``messages`` (computed over them and the bars ``seen`` before: :func:`with_history`): what the stream must
    predict."""
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.fast import FastPredictor
    from hft.streaming.state import bars_frame

    champion = FastPredictor.from_weights_file(registry.weights_path(registry.client(), "1", str(home)))
    feats = compute_features(bars_frame(with_history(messages, seen)), labelled_only=False)
    feats = feats.dropna(subset=champion.features)
    wanted = {(m.ticker, m.ts_ms) for m in messages}
    out = dict(zip(zip(feats["ticker"], feats["ts"].dt.as_unit("ms").astype("int64")),
                   champion.predict_proba(feats[champion.features].to_numpy())))
    return {k: v for k, v in out.items() if (k[0], int(k[1])) in wanted}


def consume(config, topic: str, expect: int, timeout_s: float = 30.0, parse=json.loads) -> list:
    """Up to ``expect`` records of ``topic`` from its start (a new consumer group), parsed; waits ``timeout_s``."""
    from confluent_kafka import Consumer

    from hft.kafka_conn import client_config

    c = Consumer(client_config(config.kafka_bootstrap, {"group.id": f"t-{time.time_ns()}", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    out, deadline = [], time.monotonic() + timeout_s
    while len(out) < expect and time.monotonic() < deadline:
        msg = c.poll(0.5)
        if msg is not None and msg.error() is None:
            out.append(parse(msg.value()))
    c.close()
    return out


def stream_env(home: Path, **extra: str) -> dict:
    """The environment of a test stack in ``home``: free Kafka, Redis and MLflow ports, a SQLite MLflow store in
    ``home``, two bar partitions; ``extra`` variables on top."""
    return {**os.environ, "HFT_HOME": str(home), "HFT_KAFKA_PORT": str(free_port()),
            "HFT_KAFKA_CONTROLLER_PORT": str(free_port()), "HFT_KAFKA_METRICS_PORT": str(free_port()),
            "HFT_REDIS_PORT": str(free_port()), "HFT_MLFLOW_PORT": str(free_port()),
            "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}", "HFT_BARS_PARTITIONS": "2", **extra}


@contextmanager
def stream_stack(env: dict, tickers: list[str], topics=None):
    """Kafka and Redis up for ``env`` (set in os.environ meanwhile), the stream's topics (and ``topics``), a
    champion for ``tickers``; yields the StackConfig, stops everything after."""
    from hft import stack

    old = dict(os.environ)
    os.environ.update(env)
    config = stack.StackConfig.from_env()
    try:
        stack.up(config, ("kafka", "redis"))
        stack.ensure_topics(config.kafka_bootstrap, {**stack.stream_topics(), **(topics or {})})
        train_champion(Path(env["HFT_HOME"]), tickers)
        yield config
    finally:
        stack.down(config, ("kafka", "redis"))
        os.environ.clear()
        os.environ.update(old)


def committed(store) -> int:
    """Bars the stream has committed (the sum of its committed ``market.bars`` offsets in Redis)."""
    return sum(o for (t, _), o in store.committed_offsets().items() if t == "market.bars")


def backlog(config, store) -> int:
    """Bars in Kafka the stream has not committed yet."""
    from hft.streaming.kafka_io import watermarks

    return sum(high for _, high in watermarks(config.kafka_bootstrap, "market.bars").values()) - committed(store)


class Collector(threading.Thread):
    """Publishes ``messages`` in acknowledged batches of ``size`` every ``pause`` s, in the background; counts
    what Kafka acknowledged and keeps any error for the test."""

    def __init__(self, config, messages, size: int = 20, pause: float = 0.2):
        super().__init__(daemon=True)
        self.config, self.messages, self.size, self.pause = config, messages, size, pause
        self.acked = self.failed = 0
        self.errors: list[Exception] = []

    def run(self) -> None:
        from hft.streaming import collectors

        try:
            for i in range(0, len(self.messages), self.size):
                result = collectors.publish(self.messages[i:i + self.size], self.config.kafka_bootstrap)
                self.acked += result.sent
                self.failed += result.failed
                time.sleep(self.pause)
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)


def driver_of(supervisor: int) -> int | None:
    """The supervisor's child: the spark-submit driver JVM (its own process group)."""
    from hft.stack.process import _stat

    for pid in os.listdir("/proc"):
        if pid.isdigit() and (st := _stat(int(pid))) is not None and st[2] == supervisor:
            return int(pid)
    return None


def files_holding(root: Path, secret: str, allowed: set[Path]) -> list[str]:
    """Every file under ``root`` (logs, data, checkpoints, journals, the lake...) whose bytes contain ``secret``,
    but the ``allowed`` ones (its own 0600 file, the server configuration that must hold it)."""
    needle = secret.encode()
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and path not in allowed:
            try:
                if needle in path.read_bytes():
                    found.append(str(path.relative_to(root)))
            except OSError:
                continue  # a file removed while we walk (a checkpoint's temporary one)
    return found
