"""One micro-batch of ``market.bars``: decode -> validate -> feature state -> champion model -> Redis,
with every refused message sent to the DLQ with its reason. No single message can fail or stall a batch:
whatever raises for one message after decoding is isolated to the DLQ and the rest commits.

Used by the Spark job's ``foreachBatch`` and by the plain-Python consumer alike, so both paths compute the
same features with the same model. The batch is idempotent by id (see :mod:`hft.streaming.store`).
"""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hft.errors import UserError
from hft.features.definitions import CONTEXT_ROLES, FeatureSpec
from hft.schemas import Prediction
from hft.streaming.drift import FeatureShift
from hft.streaming.messages import BARS_TOPIC, BarMessage, MessageError, decode_bar, dlq_record, prediction_record
from hft.streaming.state import FeatureState
from hft.streaming.store import RedisStore

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
    stream_length: int = 0  # entries in the Redis predictions stream after the commit
    replayed: int = 0      # records below their partition's committed offset (processed before), skipped
    offset_gaps: int = 0   # offsets never processed before this batch's first record of a partition
    inference_s: float = 0.0
    duration_s: float = 0.0
    # Wall clock (ns) when the batch reached each stage of the path (hft.observability.metrics.PATH_STAGES).
    stage_ns: dict[str, int] = field(default_factory=dict)
    # Each feature's live shift from the champion's training data (hft.streaming.drift), after this batch.
    feature_shift: dict[str, float] = field(default_factory=dict)


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
        self._committed: dict[tuple[str, int], int] | None = None  # next offset per (topic, partition)
        self._shift = FeatureShift()

    def process(self, batch_id: int, records: Sequence[Record]) -> BatchResult:
        """Process one micro-batch. Records below their partition's committed offset (see
        :mod:`hft.streaming.store`) were processed before and are skipped; nothing a single message holds can
        fail the batch: whatever raises for one message goes to the DLQ with its reason and the rest commits.
        Only the infrastructure (Redis, the DLQ topic) can fail a batch, and then it is retried whole."""
        started = time.perf_counter()
        result = BatchResult(batch_id, messages=len(records))
        try:
            records = self._unprocessed(sorted(records, key=lambda r: (r.topic, r.partition, r.offset)), result)
            if not records:
                result.skipped = True  # replay of what was committed before a restart
                log.info("batch %d: %d messages already committed, skipped", batch_id, result.messages)
                return self._done(result, started)
            return self._process(batch_id, result, records, started)
        except BaseException:
            self._state, self._committed = None, None
            raise

    def close(self) -> None:
        """Wait for the published predictions still in flight (at shutdown)."""
        if self.flush:
            self.flush()

    def _unprocessed(self, records: list[Record], result: BatchResult) -> list[Record]:
        """The records at or past their partition's committed offset. A partition whose first record lies
        beyond its committed offset has a gap (the broker no longer holds those offsets, or the job was
        started past them): logged as an error and counted in ``result.offset_gaps``, never silent."""
        if self._committed is None:
            self._committed = self.store.committed_offsets()
        committed = self._committed
        out: list[Record] = []
        first: dict[tuple[str, int], int] = {}
        for rec in records:
            tp = (rec.topic, rec.partition)
            if rec.offset < committed.get(tp, -1):
                result.replayed += 1
                continue
            first.setdefault(tp, rec.offset)
            out.append(rec)
        for tp, offset in first.items():
            if tp in committed and offset > committed[tp]:
                result.offset_gaps += offset - committed[tp]
                log.error("offsets %d..%d of %s[%d] were never processed (not in this batch nor committed before)",
                          committed[tp], offset - 1, tp[0], tp[1],
                          extra={"hft": {"topic": tp[0], "partition": tp[1], "missing": offset - committed[tp]}})
        return out

    def _feature_state(self, bars, window: int) -> FeatureState:
        """The feature state holding every series of ``bars``, for a model taking ``window`` feature rows per
        input (conv1d: its lookback). A new window (the champion changed architecture) reloads the state from
        Redis, whose per-series history grows to what the window needs (96 bars by default, what the index's
        series keeps: lookbacks up to 66 bars are served from the first bar after a restart; longer ones warm up
        once)."""
        if self._state is not None and self._state.window != window:
            self._state = None
        if self._state is None:
            self._state, self._loaded = FeatureState(self.spec, window=window), set()
            self.store.keep = max(self.store.keep, self._state.context_keep)  # trimmed per series in memory
        missing = sorted(set(self._state.series_needed(bars)) - self._loaded)  # the market context's too
        if missing:
            for key, (history, gap, volume) in self.store.load_state(missing).items():
                self._state.load(key, history, gap, volume)
            self._loaded.update(missing)
        return self._state

    def _process(self, batch_id, result, records, started) -> BatchResult:
        accepted, predictions, dead = evaluate(records, self.known, self.model, self._feature_state, self.spec, result,
                                               self._drift)
        if dead:
            self.dlq(dead)  # before the commit: a crash may repeat DLQ records, never lose them
        offsets: dict[tuple[str, int], int] = {}
        for rec in records:
            offsets[(rec.topic, rec.partition)] = rec.offset + 1
        state = self._state
        touched = {(b.ticker, b.interval) for b in accepted} if state is not None else set()
        gaps = {key: state.gaps[key] for key in touched if state is not None and key in state.gaps}
        volume = {key: state.volume_to_store(key) for key in touched if state is not None and key in state.volume}
        result.written = self.store.commit(batch_id, accepted, predictions, offsets, gaps, volume)
        result.stage_ns["committed"] = time.time_ns()
        result.stream_length = self.store.stream_length
        self._committed = {**(self._committed or {}), **offsets}
        result.predictions = predictions
        if self.publish and predictions:
            self.publish([
                (p.ticker.encode(), prediction_record(p)) for p in predictions
            ])
        return self._done(result, started)

    def _drift(self, predictor, version: str, names: list[str], x: np.ndarray) -> dict[str, float]:
        """The features' shift from the model's training data (the last bar of each window for a windowed model);
        a model without a training scaler has none. Never fails the batch."""
        mean, scale = getattr(predictor, "training_mean", None), getattr(predictor, "training_scale", None)
        if mean is None or scale is None:
            return {}
        try:
            return self._shift.update(version, names, x[:, -1, :] if x.ndim == 3 else x, mean, scale)
        except Exception:  # noqa: BLE001 - a monitoring signal must not stop predictions
            log.exception("feature drift update failed")
            return {}

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


#: A DLQ record: (Kafka key, value).
DeadLetter = tuple[bytes | None, bytes]


def evaluate(records: Sequence[Record], known: frozenset[str] | None, model: Callable[[], tuple[object, str]],
             state_for: Callable[[list[BarMessage], int], FeatureState], spec: FeatureSpec, result: BatchResult,
             drift: Callable[..., dict[str, float]] | None = None, ticker: str | None = None,
             context: Sequence[Record] = (),
             ) -> tuple[list[BarMessage], list[Prediction], list[DeadLetter]]:
    """The verdict on ``records`` (in processing order), the same in every engine (the driver's micro-batch,
    the per-ticker stateful operator in Spark's tasks): decode and validate each, admit the bars into the
    feature state ``state_for(bars, window)`` returns (advanced here), compute their features and score the
    ready ones with ``model()``'s predictor. Returns the admitted bars, the predictions and the DLQ records of
    everything refused, with its reason; counts and stage times go into ``result``. Nothing one message holds
    can raise here: it goes to the DLQ. ``ticker``: the only ticker these records may hold (a per-ticker engine's
    group); a bar of another goes to the DLQ as ``invalid_field``. ``context``: copies of the market context
    tickers' records (a per-ticker engine routes them to every group that reads them): their bars enter the state
    and the features with the others (as in the driver engine, which sees every ticker), but get no prediction,
    no count and no DLQ record (their own group judges the originals)."""
    dead: list[DeadLetter] = []

    def reject(rec: Record, reason: str, detail: str) -> None:
        result.rejected[reason] += 1
        dead.append((rec.key, dlq_record(reason, detail, rec.topic, rec.partition, rec.offset, rec.key, rec.value)))

    result.stage_ns["consumed"] = time.time_ns()
    now_ms = result.stage_ns["consumed"] // 1_000_000
    # the index (and sectors) of a universe are read even when not in it: their bars give the others their
    # market context, and get no prediction
    allowed = None if known is None else _readable(known, spec)
    bars, origin = [], {}
    for rec in records:
        try:
            bar = decode_bar(rec.value, allowed, now_ms)
        except MessageError as err:
            reject(rec, err.reason, err.detail)
            continue
        except Exception as exc:  # noqa: BLE001 - one message must never fail the batch
            reject(rec, "undecodable", f"{type(exc).__name__}: {exc}")
            continue
        if ticker is not None and bar.ticker != ticker:
            reject(rec, "invalid_field", f"ambiguous ticker: {bar.ticker!r} here, {ticker!r} to Spark's JSON parser")
            continue
        origin[id(bar)] = rec
        bars.append(bar)
    extra = _context_bars(context, spec, ticker, now_ms)
    bars = extra + bars  # first: a bar-by-bar retry (_features) still sees the batch's context
    copies = {id(bar) for bar in extra}
    unpredicted = copies | {id(bar) for bar in bars if known is not None and bar.ticker not in known}
    if not bars:
        result.stage_ns["features"] = time.time_ns()
        return [], [], dead
    predictor: Any
    predictor, version = model()
    names = list(predictor.features) if predictor is not None else []
    shape = tuple(getattr(predictor, "sample_shape", (len(names),)))
    state = state_for(bars, shape[0] if len(shape) == 2 else 1)
    accepted, refused = state.admit(bars)
    for bar, reason, detail in refused:
        if id(bar) not in copies:
            reject(origin[id(bar)], reason, detail)
    feats, x, accepted, failed = _features(state, accepted, names if len(shape) == 2 else [])
    result.stage_ns["features"] = time.time_ns()
    failed = [(bar, detail) for bar, detail in failed if id(bar) not in copies]
    admitted = [bar for bar in accepted if id(bar) not in copies]  # what this engine stores (the copies: their group)
    if unpredicted:  # the context's bars gave the others their market context: no prediction of their own
        mine = np.array([id(bar) not in unpredicted for bar in accepted], bool)
        feats, x = feats[mine].reset_index(drop=True), x[mine]
        accepted = [bar for bar, keep in zip(accepted, mine) if keep]
    predictions: list[Prediction] = []
    if accepted:
        if len(shape) == 1:
            x = feats[names].to_numpy(np.float64)
        ready = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        result.warming_up = int((~ready).sum())
        if ready.any():
            if drift is not None:
                result.feature_shift = drift(predictor, version, names, x[ready])
            t0 = time.perf_counter()
            proba = _predict(predictor, x[ready])
            result.inference_s = time.perf_counter() - t0
            now = result.stage_ns["predicted"] = time.time_ns()
            vol = spec.per_bar_volatility(feats[spec.volatility_feature].to_numpy(np.float64))[ready]
            for bar, p, v in zip((b for b, ok in zip(accepted, ready) if ok), proba, vol):
                if not 0.0 <= p <= 1.0:  # NaN included: the model could not score this bar
                    failed.append((bar, f"the model returned {p!r}"))
                    continue
                predictions.append(Prediction(bar.ticker, bar.interval, bar.ts_ms, float(p), version,
                                              bar.produced_ns, now, bar.close, float(v)))
    for bar, detail in failed:
        reject(origin[id(bar)], "processing_error", detail)
    result.accepted = len(admitted)
    return admitted, predictions, dead


def check_features(features: Sequence[str], spec: FeatureSpec) -> None:
    """UserError when the champion reads market context features that ``spec`` does not compute: a model trained
    with another ``HFT_MARKET_TICKER`` / ``HFT_SECTORS`` (:meth:`FeatureSpec.from_env`) than the stream's, whose
    every batch would otherwise fail."""
    computed = set(spec.feature_names())
    missing = [f for f in features if f.startswith(tuple(f"{r}_" for r in CONTEXT_ROLES)) and f not in computed]
    if missing:
        raise UserError(f"the champion reads {', '.join(missing)}, which this job does not compute: start it with the "
                        f"HFT_MARKET_TICKER and HFT_SECTORS its feature table was computed with")


@functools.lru_cache(maxsize=16)
def _readable(known: frozenset[str], spec: FeatureSpec) -> frozenset[str]:
    """The tickers a universe's engine decodes: ``known`` and the context tickers its features read (once per
    universe, not per micro-batch and group: the tasks engine calls :func:`evaluate` for every ticker)."""
    return frozenset(spec.with_context(sorted(known)))


def _context_bars(records: Sequence[Record], spec: FeatureSpec, ticker: str | None, now_ms: int) -> list[BarMessage]:
    """The bars of the context ``records`` routed to ``ticker``'s group that its features read (those of another
    ticker, or that do not decode, are left to their own group, which sends them to the DLQ)."""
    wanted = {ctx for ctxs in spec.context_tickers([ticker]).values() for ctx in ctxs if ctx is not None}
    out = []
    for rec in records:
        try:
            bar = decode_bar(rec.value, None, now_ms)
        except Exception:  # noqa: BLE001 - the original, in its own group, goes to the DLQ
            continue
        if bar.ticker in wanted and bar.ticker != ticker:
            out.append(bar)
    return out


def _features(state: FeatureState, accepted: list[BarMessage], names: list[str]):
    """Features of the admitted bars (and, for a windowed model, the windows of ``names``), computed for
    the batch at once; should that raise, bar by bar, so a bar that cannot be computed is returned in
    ``failed`` (with why) and never enters the state. Returns (features, windows, their bars, failed)."""
    try:
        return (*state.features_and_windows(accepted, names), accepted, [])
    except Exception:  # noqa: BLE001 - isolated below, bar by bar
        log.exception("features of a batch of %d bars failed; computing bar by bar", len(accepted))
    frames, windows, ok, failed = [], [], [], []
    for bar in accepted:
        try:
            frame, window = state.features_and_windows([bar], names)
        except Exception as exc:  # noqa: BLE001 - this bar goes to the DLQ
            failed.append((bar, f"features failed: {type(exc).__name__}: {exc}"))
            continue
        frames.append(frame)
        windows.append(window)
        ok.append(bar)
    if not ok:
        return (*state.features_and_windows([], names), ok, failed)
    return pd.concat(frames, ignore_index=True), np.concatenate(windows), ok, failed



def _predict(predictor, x: np.ndarray) -> np.ndarray:
    """Probabilities for the rows of ``x``; should the batch call raise, row by row (NaN where a row
    raises: those bars go to the DLQ)."""
    try:
        return np.asarray(predictor.predict_proba(x), np.float64).reshape(len(x))
    except Exception:  # noqa: BLE001 - isolated below, row by row
        log.exception("inference on a batch of %d rows failed; scoring row by row", len(x))
    out = np.full(len(x), np.nan)
    for i in range(len(x)):
        try:
            out[i] = float(np.asarray(predictor.predict_proba(x[i : i + 1])).reshape(-1)[0])
        except Exception:  # noqa: BLE001 - NaN: this bar goes to the DLQ
            log.exception("inference failed for one row")
    return out
