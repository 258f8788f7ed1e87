"""The streaming job's ``tasks`` engine: per-ticker feature state and inference inside Spark's tasks.

Kafka ``market.bars`` is grouped by each message's ticker (read by Spark's JSON parser; messages without
one form the group ``""``) and handed to :class:`TickerProcessor`, a ``transformWithStateInPandas`` stateful
processor: per ticker, in Kafka order, the same verdict as the driver engine
(:func:`hft.streaming.processor.evaluate`: decode, validate, admit, features, champion model), with the
ticker's recent bars in Spark's state store (RocksDB). Its output rows (predictions and DLQ records) are
written by the same tasks (:class:`TaskWriter`): DLQ records to Kafka first (acknowledged), then the
predictions Redis does not hold yet to Kafka ``predictions`` (acknowledged) and to Redis
(:meth:`hft.streaming.store.RedisStore.commit`).

Nothing lost, nothing twice: Spark commits a micro-batch's state and Kafka offsets together in its
checkpoint, after every task wrote. A batch replayed after a crash recomputes the same bars from the same
state; its predictions already in Redis are recognised (a series' prediction is written only when newer than
the series' mark) and not sent to Kafka again; DLQ records may repeat (never lost), as in the driver engine,
and so may the Kafka ``predictions`` records of a task that died between Kafka's acknowledgement and the
Redis commit.

Market context (the index ETF's features, read by every ticker's): a group sees only its own ticker's messages,
so each message of a context ticker is also copied to the group of every ticker of ``--tickers`` that reads it
(:func:`routed`: each message exploded to its groups, in the same micro-batch as the original): its bars enter the group's state
(stored beside the ticker's, ``context`` in the JSON) and its features, exactly as the driver engine, which sees
every ticker, computes them; a champion reading the context is refused without ``--tickers``
(:func:`check_universe`).

Differences from the driver engine, by design: a ticker seen for the first time is checked against the wall
clock only (a group sees no other ticker, so not against the newest bar of the market); a message whose ticker
Spark's parser reads differently from ours (a duplicated ``ticker`` field) goes to the DLQ as
``invalid_field``; and the job's metrics (messages, predictions, DLQ records by reason, batch durations) come
from Spark's progress reports, where each micro-batch's counts arrive once its tasks are done (``observe``);
the per-stage latencies, inference time and feature drift of the driver engine are not measured. Each Python
worker checks the champion alias on its own (every 5 s), so for up to that long after the alias moves, tickers
in different tasks may be served by different versions. A ticker's state expires after :data:`STATE_TTL_MS`
without a bar, as the driver engine's state hashes do in Redis.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Sequence

import numpy as np
import pandas as pd
from pyspark.sql.streaming.stateful_processor import StatefulProcessor

from hft.errors import UserError
from hft.features.definitions import FeatureSpec
from hft.schemas import Prediction
from hft.streaming.messages import DLQ_REASONS, BarMessage, prediction_record
from hft.streaming.processor import BatchResult, Record, check_features, evaluate
from hft.streaming.state import FeatureState
from hft.streaming.store import STATE_TTL_S

log = logging.getLogger(__name__)

#: The state store's provider for the stateful operator (transformWithState needs RocksDB).
ROCKSDB_PROVIDER = "org.apache.spark.sql.execution.streaming.state.RocksDBStateStoreProvider"
STATE_SCHEMA = "bars STRING"
#: A ticker's state is dropped after this long without a bar: the driver engine's Redis state's TTL.
STATE_TTL_MS = STATE_TTL_S * 1000
#: The operator's output: one row per prediction or DLQ record.
OUTPUT_DDL = ("kind STRING, reason STRING, key BINARY, value BINARY, ticker STRING, `interval` STRING, ts_ms BIGINT, "
              "probability DOUBLE, model_version STRING, produced_ns BIGINT, predicted_ns BIGINT, close DOUBLE, "
              "volatility DOUBLE")
_PREDICTION_FIELDS = ("ticker", "interval", "ts_ms", "probability", "model_version", "produced_ns", "predicted_ns",
                      "close", "volatility")
#: The name of the micro-batch counts in Spark's progress reports (``observedMetrics``).
OBSERVED = "hft_batch"
#: The grouping column: the message's ticker as Spark's JSON parser reads it.
TICKER_SQL = "coalesce(get_json_object(cast(value AS STRING), '$.ticker'), '')"

_models: dict[tuple, object] = {}  # per Python worker: the champion, loaded once


def _champion(tracking_uri: str | None, refresh_s: float, spec: FeatureSpec, tickers: frozenset[str] | None,
              fallback: str | None):
    from hft.streaming.champion import ChampionModel

    key = (tracking_uri, refresh_s, spec, tickers)
    if key not in _models:
        _models[key] = ChampionModel(tracking_uri, refresh_s=refresh_s, accept=servable(spec, tickers), fallback=fallback)
    return _models[key]


def servable(spec: FeatureSpec, tickers: Collection[str] | None):
    """The tasks engine's ``accept`` for :class:`hft.streaming.champion.ChampionModel`: a champion whose features
    ``spec`` computes (:func:`hft.streaming.processor.check_features`) and, when it reads the market context, a
    universe to route the index's bars to (:func:`check_universe`)."""
    def accept(predictor) -> None:
        check_features(predictor.features, spec)
        check_universe(predictor.features, tickers, spec)
    return accept


def _rows_of(bars: list[BarMessage]) -> list[list[float]]:
    return [[b.ts_ms, b.open, b.high, b.low, b.close, b.volume] for b in bars]


def _bars_of(ticker: str, interval: str, rows: list[list[float]]) -> list[BarMessage]:
    return [BarMessage(ticker, interval, int(ts), o, h, lo, c, float(v)) for ts, o, h, lo, c, v in rows]


def dump_state(state: FeatureState, ticker: str) -> str:
    """``ticker``'s feature state as JSON: each interval's recent bars, its newest session's overnight gap, its
    volume totals and its run of far-ahead bar times; and (``context``) the recent bars of the market context
    tickers its group was sent, per ticker and interval."""
    mine = lambda table: {i: v for (t, i), v in table.items() if t == ticker and v}  # noqa: E731
    context: dict[str, dict[str, list]] = {}
    for (t, interval), bars in state.bars.items():
        if t != ticker and bars:
            context.setdefault(t, {})[interval] = _rows_of(bars)
    return json.dumps({
        "bars": {interval: _rows_of(bars) for interval, bars in mine(state.bars).items()},
        "gaps": {interval: list(gap) for interval, gap in mine(state.gaps).items()},
        "volume": mine(state.volume),
        "ahead": mine(state.ahead),
        "context": context,
    })


def load_state(state: FeatureState, ticker: str, stored: str | None) -> FeatureState:
    """``state`` holding the bars :func:`dump_state` stored for ``ticker`` (None: nothing yet)."""
    if stored:
        doc = json.loads(stored)
        gaps, volume = doc.get("gaps", {}), doc.get("volume", {})
        for interval, rows in doc["bars"].items():
            state.load((ticker, interval), _bars_of(ticker, interval, rows), gaps.get(interval), volume.get(interval))
        for interval, run in doc.get("ahead", {}).items():
            state.ahead[(ticker, interval)] = [int(t) for t in run]
        for other, series in doc.get("context", {}).items():
            for interval, rows in series.items():
                state.load((other, interval), _bars_of(other, interval, rows))
    return state


def context_routes(tickers: Sequence[str], spec: FeatureSpec = FeatureSpec()) -> list[tuple[str, str]]:
    """(context ticker, group) pairs: the groups each context ticker's messages are copied to (every ticker of
    the universe whose features read it, itself excepted)."""
    pairs: set[tuple[str, str]] = set()
    for ctxs in spec.context_tickers(list(tickers)).values():
        pairs.update((ctx, t) for ctx, t in zip(ctxs, tickers) if ctx is not None and ctx != t)
    return sorted(pairs)


def verdict(ticker: str, records: Sequence[Record], stored: str | None, model, known: frozenset[str] | None,
            spec: FeatureSpec = FeatureSpec(), context: Sequence[Record] = (),
            ) -> tuple[list[Prediction], list[tuple[bytes | None, bytes]], str | None]:
    """One ticker's records of a micro-batch (in Kafka order) against its stored state: the predictions, the DLQ
    records, and the state to store (None: unchanged). A message that decodes to another ticker than its group's
    goes to the DLQ: its bar would otherwise enter another ticker's state. ``context``: the copies of the market
    context tickers' records routed to this group (:func:`context_routes`), in Kafka order."""
    holder: list[FeatureState] = []

    def state_for(bars: list[BarMessage], window: int) -> FeatureState:
        holder.append(load_state(FeatureState(spec, window=window), ticker, stored))
        return holder[-1]

    _, predictions, dead = evaluate(records, known, model, state_for, spec, BatchResult(-1, messages=len(records)),
                                    ticker=ticker, context=context)
    new_state = dump_state(holder[0], ticker) if holder else None  # no bar decoded: the state was not consulted
    return predictions, dead, (new_state if new_state != stored else None)


def _rows(predictions: list[Prediction], dead: list[tuple[bytes | None, bytes]]) -> pd.DataFrame:
    out = {"kind": ["dlq"] * len(dead) + ["prediction"] * len(predictions),
           "reason": [json.loads(v)["reason"] for _, v in dead] + [None] * len(predictions),
           "key": [k for k, _ in dead] + [p.ticker.encode() for p in predictions],
           "value": [v for _, v in dead] + [prediction_record(p) for p in predictions]}
    for name in _PREDICTION_FIELDS:
        out[name] = [None] * len(dead) + [getattr(p, name) for p in predictions]
    frame = pd.DataFrame(out)
    for name in ("ts_ms", "produced_ns", "predicted_ns"):
        frame[name] = frame[name].astype("Int64")
    for name in ("probability", "close", "volatility"):
        frame[name] = frame[name].astype(np.float64)
    return frame


class TickerProcessor(StatefulProcessor):
    """``transformWithStateInPandas`` processor: one group per ticker (module docstring)."""

    def __init__(self, known_tickers: Sequence[str] | None, tracking_uri: str | None, refresh_s: float = 5.0,
                 spec: FeatureSpec = FeatureSpec(), served: str | None = None):
        self.known = frozenset(known_tickers) if known_tickers else None
        self.tracking_uri = tracking_uri
        self.refresh_s = refresh_s
        self.spec = spec
        self.served = served  # the version the driver accepted at start: a worker's fallback (ChampionModel)

    def init(self, handle) -> None:
        self.state = handle.getValueState("feature_state", STATE_SCHEMA, STATE_TTL_MS)

    def handleInputRows(self, key, rows: Iterator[pd.DataFrame], timerValues) -> Iterator[pd.DataFrame]:
        frame = pd.concat(list(rows), ignore_index=True).sort_values(["topic", "partition", "offset"], kind="stable")
        copy = frame["context"].to_numpy(bool)
        records = [Record(k, v, int(p), int(o), t) for k, v, p, o, t in
                   zip(frame["key"], frame["value"], frame["partition"], frame["offset"], frame["topic"])]
        stored = self.state.get()
        predictions, dead, new_state = verdict(key[0], [r for r, c in zip(records, copy) if not c],
                                               stored[0] if stored else None,
                                               _champion(self.tracking_uri, self.refresh_s, self.spec, self.known, self.served),
                                               self.known,
                                               self.spec, context=[r for r, c in zip(records, copy) if c])
        if new_state is not None:
            self.state.update((new_state,))
        if predictions or dead:  # nothing to say (bars warming up): no frame, whose empty columns Arrow cannot type
            yield _rows(predictions, dead)

    def close(self) -> None:
        pass


_sinks: dict[tuple[str, str], tuple] = {}  # per Python worker: (store, dlq sink, predictions sink)


def _task_sinks(redis_url: str, bootstrap: str, kafka_login):
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import DLQ_TOPIC, PREDICTIONS_TOPIC
    from hft.streaming.store import RedisStore

    key = (redis_url, bootstrap)
    if key not in _sinks:
        _sinks[key] = (RedisStore.from_url(redis_url),
                       TopicSink(bootstrap, DLQ_TOPIC, "hft-stream-dlq", auth=kafka_login),
                       TopicSink(bootstrap, PREDICTIONS_TOPIC, "hft-stream-predictions", auth=kafka_login))
    return _sinks[key]


class TaskWriter:
    """``writeStream.foreach`` writer: a task's rows, written when the task's partition is complete (DLQ first,
    acknowledged; then the predictions, idempotently; module docstring)."""

    def __init__(self, redis_url: str, bootstrap: str):
        from hft.kafka_conn import login

        self.redis_url = redis_url
        self.bootstrap = bootstrap
        # found on the driver and shipped with the writer: an executor on another worker may have another
        # HFT_HOME (Redis's password file is named in its URL)
        self.kafka_login = login()

    def open(self, partition_id: int, epoch_id: int) -> bool:
        self.epoch = epoch_id
        self.rows: list = []
        return True

    def process(self, row) -> None:
        self.rows.append(row)

    def close(self, error) -> None:
        if error is not None or not self.rows:
            return
        store, dlq, predictions = _task_sinks(self.redis_url, self.bootstrap, self.kafka_login)
        dead = [(r.key, r.value) for r in self.rows if r.kind == "dlq"]
        if dead:
            dlq.send(dead)  # acknowledged before the predictions: a replay may repeat it, never lose it
        rows = {(r.ticker, r.interval, r.ts_ms): r for r in self.rows if r.kind == "prediction"}
        preds = [Prediction(*(getattr(r, n) for n in _PREDICTION_FIELDS)) for r in rows.values()]
        new = store.unwritten(preds)  # a replay's predictions already in Redis: neither Kafka nor Redis again
        if new:
            # Kafka first, acknowledged (DeliveryError fails the task, which Spark runs again), then Redis, whose
            # marks make the replay's commit a no-op: a crash between the two repeats those records in Kafka
            # (at least once there), never in Redis.
            predictions.send([(p.ticker.encode(), rows[(p.ticker, p.interval, p.ts_ms)].value) for p in new])
            store.commit(self.epoch, [], new)


def check_universe(features: Sequence[str], tickers: Collection[str] | None, spec: FeatureSpec = FeatureSpec()) -> None:
    """UserError when a model reading market context ``features`` would be served without a universe: the copies
    of the index's messages are routed to the groups of ``--tickers`` only (without, every group would read no
    context: 0, where the batch job and the driver engine read the index)."""
    context = {name for names in spec.context_names().values() for name in names}
    used = sorted(context & set(features))
    if used and not tickers:
        raise UserError(f"the champion reads the market context ({', '.join(used)}): the tasks engine needs "
                        f"--tickers to send the index's bars to every ticker's group")


def routed(stream, tickers: Sequence[str], spec: FeatureSpec = FeatureSpec()):
    """``stream`` with each message's group (``ticker``: its ticker as Spark's JSON parser reads it) and ``context``
    false, and a copy (``context`` true) of each market context ticker's message for every group of ``tickers``
    that reads it (:func:`context_routes`): a group gets them in the same micro-batch as the original."""
    groups: dict[str, list[str]] = {}
    for source, group in context_routes(tickers, spec):
        groups.setdefault(source, []).append(group)
    if not groups:
        return stream.selectExpr("*", f"{TICKER_SQL} AS ticker", "false AS context")
    from hft.features.spark import sql_string as quote

    table = "map(" + ", ".join(f"{quote(source)}, array({', '.join(map(quote, to))})" for source, to in groups.items()) + ")"
    # one scan of the source: each message exploded to its own group and its copies' (a union of two scans of the
    # same source would read and parse every message twice, and count it twice in the progress reports)
    copies = f"transform(coalesce(try_element_at({table}, _source), CAST(array() AS ARRAY<STRING>)), g -> " \
             "named_struct('ticker', g, 'context', true))"
    return (stream.selectExpr("*", f"{TICKER_SQL} AS _source")
            .selectExpr(*stream.columns, f"explode(concat(array(named_struct('ticker', _source, 'context', false)), "
                                         f"{copies})) AS _to")
            .selectExpr(*stream.columns, "_to.ticker AS ticker", "_to.context AS context"))


def stateful_query(stream, args, tracking_uri: str | None, spec: FeatureSpec, served: str | None = None):
    """The ``tasks`` engine on the Kafka source ``stream`` (key, value, topic, partition, offset), computing the
    features of ``spec`` (the driver's :meth:`FeatureSpec.from_env`, sent to the tasks with the processor);
    ``served``: the champion version the driver accepted, which a worker serves while the champion is one it
    cannot."""
    from pyspark.sql import functions as F

    processor = TickerProcessor(args.tickers, tracking_uri, args.model_refresh_s, spec, served)
    count = lambda cond, name: F.count(F.when(cond, 1)).alias(name)  # noqa: E731
    return (
        routed(stream, args.tickers or [], spec)
        .groupBy("ticker")
        .transformWithStateInPandas(processor, OUTPUT_DDL, "Append", "ProcessingTime")  # the state's TTL
        # each micro-batch's counts, in its progress report (record_progress): the tasks' work, counted once
        .observe(OBSERVED, count(F.col("kind") == "prediction", "predictions"), count(F.col("kind") == "dlq", "dlq"),
                 *(count(F.col("reason") == r, r) for r in DLQ_REASONS))
        .writeStream.queryName("hft_predict_stream")
        .foreach(TaskWriter(args.redis, args.bootstrap))
        .option("checkpointLocation", args.checkpoint)
        .trigger(processingTime=args.trigger)
        .start()
    )


def record_progress(progress) -> None:
    """The job's metrics from one micro-batch's progress report (the driver's; its tasks counted their rows).
    Never raises: a monitoring signal must not stop the job."""
    try:
        _record_progress(progress)
    except Exception:  # noqa: BLE001
        log.exception("could not read the metrics of a progress report")


def _record_progress(progress) -> None:
    from hft.observability.metrics import STREAM_BATCH_SECONDS, STREAM_IN, STREAM_PREDICTIONS, STREAM_REJECTED

    STREAM_IN.inc(progress["numInputRows"])
    STREAM_BATCH_SECONDS.observe(progress["durationMs"].get("triggerExecution", 0) / 1000)
    observed = (progress["observedMetrics"] or {}).get(OBSERVED)
    if observed is None:
        return
    counts = observed.asDict() if hasattr(observed, "asDict") else dict(observed)
    STREAM_PREDICTIONS.inc(counts["predictions"])
    for reason in DLQ_REASONS:
        if counts.get(reason):
            STREAM_REJECTED.labels(reason).inc(counts[reason])
    if other := counts["dlq"] - sum(counts.get(r, 0) for r in DLQ_REASONS):
        STREAM_REJECTED.labels("other").inc(other)


def configure(spark, state_partitions: int) -> None:
    """The session's settings for the stateful operator: RocksDB state, ``state_partitions`` state partitions
    (fixed by the checkpoint's first batch)."""
    spark.conf.set("spark.sql.streaming.stateStore.providerClass", ROCKSDB_PROVIDER)
    spark.conf.set("spark.sql.shuffle.partitions", str(state_partitions))
