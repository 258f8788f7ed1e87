"""One micro-batch of ``market.bars``: decode -> validate -> feature state -> champion model -> Redis,
with every refused message sent to the DLQ with its reason.

Used by the Spark job's ``foreachBatch`` and by the plain-Python consumer alike, so both paths compute the
same features with the same model. The batch is idempotent by id (see :mod:`hft.streaming.store`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from hft.features.definitions import FeatureSpec
from hft.streaming.messages import BARS_TOPIC, MessageError, decode_bar, dlq_record, prediction_record
from hft.streaming.state import FeatureState
from hft.streaming.store import Prediction, RedisStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """A Kafka record as the processor needs it."""

    key: bytes | None
    value: bytes | None
    partition: int
    offset: int
    topic: str = BARS_TOPIC


@dataclass
class BatchResult:
    batch_id: int
    messages: int = 0
    accepted: int = 0
    rejected: Counter = field(default_factory=Counter)
    warming_up: int = 0
    predictions: list[Prediction] = field(default_factory=list)
    written: int = 0
    skipped: bool = False
    inference_s: float = 0.0
    duration_s: float = 0.0


class BatchProcessor:
    """Processes micro-batches; ``model()`` returns the current (FastPredictor, version) — it may change
    between batches when the champion alias moves.

    ``dlq`` must return once its records are stored (they are sent before the commit, so a crash can repeat
    them but never lose them). ``publish`` (Kafka ``predictions``, after the commit) may return at once:
    Redis is the record of predictions and the commit already happened, so waiting for the broker's
    acknowledgement would only delay the next batch; ``close()`` calls ``flush`` to wait for what is
    still in flight."""

    def __init__(
        self,
        store: RedisStore,
        model: Callable[[], tuple[object, str]],
        dlq: Callable[[list[tuple[bytes | None, bytes]]], None],
        publish: Callable[[list[tuple[bytes, bytes]]], None] | None = None,
        known_tickers: Sequence[str] | None = None,
        spec: FeatureSpec = FeatureSpec(),
        on_result: Callable[[BatchResult], None] | None = None,
        flush: Callable[[], None] | None = None,
    ):
        self.store = store
        self.model = model
        self.dlq = dlq
        self.publish = publish
        self.known = frozenset(known_tickers) if known_tickers else None
        self.spec = spec
        self.on_result = on_result
        self.flush = flush
        # The feature state lives here between batches; Redis (which every commit updates to the same bars)
        # is read only for keys this process has not loaded yet: after a restart, or a new ticker. Any
        # failure drops it, so a batch that did not commit never leaves its bars in memory.
        self._state: FeatureState | None = None
        self._loaded: set[tuple[str, str]] = set()

    def process(self, batch_id: int, records: Sequence[Record]) -> BatchResult:
        started = time.perf_counter()
        result = BatchResult(batch_id, messages=len(records))
        if batch_id <= self.store.last_batch():
            result.skipped = True  # replay of a batch already committed before a restart
            log.info("batch %d already committed, skipped", batch_id)
            return self._done(result, started)
        records = sorted(records, key=lambda r: (r.partition, r.offset))
        dead: list[tuple[bytes | None, bytes]] = []
        bars, origin = [], {}
        for rec in records:
            try:
                bar = decode_bar(rec.value, self.known)
            except MessageError as err:
                result.rejected[err.reason] += 1
                dead.append((rec.key, dlq_record(err.reason, err.detail, rec.topic, rec.partition, rec.offset, rec.key, rec.value)))
                continue
            origin[id(bar)] = rec
            bars.append(bar)
        try:
            return self._process(batch_id, result, dead, bars, origin, started)
        except BaseException:
            self._state = None
            raise

    def close(self) -> None:
        """Wait for the published predictions still in flight (at shutdown)."""
        if self.flush:
            self.flush()

    def _feature_state(self, bars) -> FeatureState:
        if self._state is None:
            self._state, self._loaded = FeatureState(self.spec), set()
        missing = sorted({(b.ticker, b.interval) for b in bars} - self._loaded)
        if missing:
            for key, history in self.store.load_state(missing).items():
                self._state.load(key, history)
            self._loaded.update(missing)
        return self._state

    def _process(self, batch_id, result, dead, bars, origin, started) -> BatchResult:
        state = self._feature_state(bars)
        accepted, refused = state.admit(bars)
        for bar, reason, detail in refused:
            rec = origin[id(bar)]
            result.rejected[reason] += 1
            dead.append((rec.key, dlq_record(reason, detail, rec.topic, rec.partition, rec.offset, rec.key, rec.value)))
        result.accepted = len(accepted)
        if dead:
            self.dlq(dead)  # before the commit: a crash may repeat DLQ records, never lose them
        predictions: list[Prediction] = []
        if accepted:
            feats = state.features(accepted)
            predictor, version = self.model()
            x = feats[predictor.features].to_numpy(np.float64)
            ready = np.isfinite(x).all(axis=1)
            result.warming_up = int((~ready).sum())
            if ready.any():
                t0 = time.perf_counter()
                proba = predictor.predict_proba(x[ready])
                result.inference_s = time.perf_counter() - t0
                now = time.time_ns()
                vol = self.spec.per_bar_volatility(feats[self.spec.volatility_feature].to_numpy(np.float64))[ready]
                for bar, p, v in zip((b for b, ok in zip(accepted, ready) if ok), proba, vol):
                    predictions.append(Prediction(bar.ticker, bar.interval, bar.ts_ms, float(p), version,
                                                  bar.produced_ns, now, bar.close, float(v)))
        result.written = self.store.commit(batch_id, accepted, predictions)
        result.predictions = predictions
        if self.publish and predictions:
            self.publish([
                (p.ticker.encode(), prediction_record(p.ticker, p.interval, p.ts_ms, p.probability, p.model_version,
                                                      p.produced_ns, p.predicted_ns))
                for p in predictions
            ])
        return self._done(result, started)

    def _done(self, result: BatchResult, started: float) -> BatchResult:
        result.duration_s = time.perf_counter() - started
        if self.on_result:
            self.on_result(result)
        if result.messages and not result.skipped:
            log.info(
                "batch %d: %d messages, %d accepted, %d rejected, %d predictions (%d new)",
                result.batch_id, result.messages, result.accepted, sum(result.rejected.values()),
                len(result.predictions), result.written,
                extra={"hft": {"batch_id": result.batch_id, "messages_in": result.messages,
                               "rejected": dict(result.rejected), "predictions": len(result.predictions)}},
            )
        return result
