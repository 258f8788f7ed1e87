"""Prometheus metrics of the real-time path (prometheus-client). One definition per metric, here.

Every process serves ``/metrics`` on 127.0.0.1 and announces it to Prometheus (:func:`serve`).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# collectors
COLLECTOR_SENT = Counter("hft_collector_messages_sent_total", "Bars delivered to Kafka", ["source"])
COLLECTOR_FAILED = Counter("hft_collector_messages_failed_total", "Bars Kafka did not accept", ["source"])

# streaming job
KAFKA_DELIVERY_FAILED = Counter("hft_kafka_delivery_failed_total", "Messages Kafka did not acknowledge", ["topic"])
STREAM_IN = Counter("hft_stream_messages_in_total", "Messages read from market.bars")
STREAM_REJECTED = Counter("hft_stream_messages_rejected_total", "Messages sent to the DLQ", ["reason"])
STREAM_REPLAYED = Counter("hft_stream_messages_replayed_total",
                          "Messages below their partition's committed offset (processed before a restart), skipped")
STREAM_OFFSET_GAPS = Counter("hft_stream_offset_gaps_total", "Kafka offsets never processed (a gap before a batch)")
STREAM_PREDICTIONS = Counter("hft_stream_predictions_total", "Predictions written to Redis")
STREAM_BATCH_SECONDS = Histogram("hft_stream_batch_duration_seconds", "Micro-batch processing time", buckets=LATENCY_BUCKETS)
STREAM_INFERENCE_SECONDS = Histogram("hft_stream_inference_latency_seconds", "Model inference time per batch", buckets=LATENCY_BUCKETS)
STREAM_PREDICTION_AGE = Gauge("hft_stream_prediction_age_seconds", "Bar produced -> prediction written, last batch max")
STREAM_LENGTH = Gauge("hft_stream_predictions_stream_length",
                      "Entries in the Redis predictions stream (above its cap while a consumer group lags)")
STREAM_KAFKA_LAG = Gauge("hft_stream_kafka_lag_messages",
                         "Bars in market.bars not yet processed by the stream, per partition", ["partition"])
INFERENCE_DEVICE = Gauge("hft_inference_device", "1 for the device the served model's batch inference runs on (cpu, gpu:<name>)",
                         ["device"])
STREAM_MODEL_VERSION = Gauge("hft_stream_model_version", "Registered model version being served")
STREAM_FEATURE_SHIFT = Gauge(
    "hft_stream_feature_shift",
    "Exponentially weighted mean of each served feature standardised by the champion's training mean and scale "
    "(0: like the training data; +-1: moved by one training standard deviation)", ["feature"])
REGISTRY_CHAMPION_VERSION = Gauge("hft_registry_champion_version",
                                  "The registry's champion version, as the streaming job last read it")
MODEL_FEATURE_PSI = Gauge(
    "hft_model_feature_psi",
    "Population stability index of each feature between the served champion's training rows and the latest "
    "sessions of its holdout (hft.model.understanding; > 0.25: shifted)", ["feature"])
MODEL_RECENT_AUC = Gauge(
    "hft_model_recent_auc",
    "The served champion's AUC on the latest sessions of its holdout (stat: value, and low/high of its 95% "
    "bootstrap interval); high < 0.5: worse than chance lately", ["stat"])
STREAM_MODEL_GATE_APPROVED = Gauge(
    "hft_stream_model_gate_approved",
    "1 when the gate approved the champion version being served; 0 when it rejected it or never judged it "
    "(the alias was moved by hand): alert on 0")


# The whole path, by stage: seconds from a bar's production by its collector (``produced_ns``) to each stage,
# one observation per bar that got a prediction, so `histogram_quantile(0.99, sum by (le, stage) (rate(...)))`
# shows where the time goes. Stream: read from Kafka, features, model, committed to Redis; executor: read from
# Redis, decided, order sent (journaled and published), filled.
PATH_STAGES = ("consumed", "features", "predicted", "committed", "received", "decided", "sent", "filled")
PATH_LATENCY = Histogram("hft_path_latency_seconds", "Bar produced -> this stage of the path", ["stage"],
                         buckets=LATENCY_BUCKETS)


def observe_path(stage: str, at_ns: int, produced_ns) -> None:
    """One ``PATH_LATENCY`` observation per produced time (ns; None or 0: unknown, skipped)."""
    child = PATH_LATENCY.labels(stage)
    for produced in produced_ns:
        if produced:
            child.observe(max(at_ns - int(produced), 0) / 1e9)


def serve(port: int, component: str) -> None:
    """Expose ``/metrics`` on 127.0.0.1:port (0 disables) and announce it to the stack's Prometheus as
    ``component`` (collector, stream, executor: :mod:`hft.observability.discovery`)."""
    if port:
        from hft.observability.discovery import register

        start_http_server(port, addr="127.0.0.1")
        register(component, port)


def record_batch(result) -> None:
    """Update the streaming metrics from a :class:`hft.streaming.processor.BatchResult`."""
    import time

    STREAM_REPLAYED.inc(result.replayed)
    STREAM_OFFSET_GAPS.inc(result.offset_gaps)
    if result.skipped:
        return
    STREAM_IN.inc(result.messages - result.replayed)
    for reason, count in result.rejected.items():
        STREAM_REJECTED.labels(reason).inc(count)
    STREAM_PREDICTIONS.inc(result.written)
    STREAM_LENGTH.set(result.stream_length)
    STREAM_BATCH_SECONDS.observe(result.duration_s)
    if result.predictions:
        STREAM_INFERENCE_SECONDS.observe(result.inference_s)
        produced = [p.produced_ns for p in result.predictions if p.produced_ns]
        for stage, at_ns in result.stage_ns.items():
            observe_path(stage, at_ns, produced)
        if produced:
            STREAM_PREDICTION_AGE.set((time.time_ns() - min(produced)) / 1e9)
        for feature, shift in result.feature_shift.items():
            STREAM_FEATURE_SHIFT.labels(feature).set(shift)
        try:
            STREAM_MODEL_VERSION.set(float(result.predictions[-1].model_version))
        except ValueError:
            pass

# executor service (hft execute)
DECISION_BUCKETS = (1e-7, 2.5e-7, 5e-7, 1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 1e-4, 1e-3)
EXEC_DECISIONS = Counter("hft_exec_decisions_total", "Predictions decided", ["action"])
EXEC_ORDERS = Counter("hft_exec_orders_total", "Orders sent to the exchange", ["ticker", "side"])
EXEC_REJECTED = Counter("hft_exec_rejections_total", "Predictions that did not become orders, by rule", ["reason"])
EXEC_FILLS = Counter("hft_exec_fills_total", "Fills received", ["ticker"])
EXEC_POSITION = Gauge("hft_exec_position_shares", "Position per ticker", ["ticker"])
EXEC_PNL = Gauge("hft_exec_pnl", "PnL per ticker since the journal began (currency units)", ["ticker"])
EXEC_EQUITY = Gauge("hft_exec_equity", "Cash + positions at last prices (currency units)")
EXEC_DECISION_SECONDS = Histogram("hft_exec_decision_latency_seconds", "Executor time per decision (batch mean)",
                                  buckets=DECISION_BUCKETS)
EXEC_HALTED = Gauge("hft_exec_halted", "1 while the kill switch or the daily loss limit halts trading")
EXEC_DAY_PNL = Gauge("hft_exec_day_pnl", "PnL since the start of the UTC day (currency units): the loss limit's measure")
EXEC_LOSS_LIMIT = Gauge("hft_exec_daily_loss_limit", "The daily loss limit (currency units): trading halts at -limit")
EXEC_LAG = Gauge("hft_exec_predictions_lag", "Predictions in the Redis stream not yet delivered to the executor's group")
EXEC_LEADER = Gauge("hft_exec_leader", "1 while this executor holds the lease (hot standby: leads), 0 while it stands by")
EXEC_EPOCH = Gauge("hft_exec_epoch", "The fencing epoch of this executor's latest leadership")
EXEC_PENDING = Gauge("hft_exec_predictions_pending", "Predictions delivered to the executor's group, not acknowledged")
EXEC_FILL_SLIPPAGE = Histogram(
    "hft_exec_fill_slippage_bps",
    "Fill price against the price expected at the decision (the prediction's bar close), basis points, "
    "positive when worse for us", buckets=(-100, -25, -5, 0, 5, 10, 25, 50, 100, 250, 1000))
