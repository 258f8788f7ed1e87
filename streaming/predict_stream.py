"""Streaming inference: Kafka ``market.bars`` -> features -> champion model -> Redis (+ Kafka ``predictions``).

Spark Structured Streaming, micro-batch. Each micro-batch (``foreachBatch``) is handed to
:class:`hft.streaming.processor.BatchProcessor`: it validates every message (bad ones go to
``market.bars.dlq`` with the reason), advances the per-ticker feature state (the same feature code as the
batch job), runs the ``champion`` model from the MLflow registry (reloaded when the alias moves), and
commits predictions and state to Redis atomically, keyed by ticker and bar time. Kafka offsets are
checkpointed by Spark, and each commit to Redis records the Kafka offsets it consumed: records already
committed are recognised by their offsets and skipped, so a kill -9 and restart loses and duplicates
nothing. A job started without its checkpoint (lost, deleted, or a new folder) while Redis holds committed
offsets resumes from those offsets, not from ``--starting-offsets``, and says so in its log.

Without ``--tickers`` the universe is every ticker whose messages pass validation (a ticker symbol is 1-10
characters ``A-Z 0-9 . -``, starting with a letter); with it, other tickers go to the DLQ as
``unknown_ticker``.

    spark-submit --master 'local[2]' --jars "$(hft stack jars)" streaming/predict_stream.py \\
        --bootstrap 127.0.0.1:9092 --redis redis://127.0.0.1:6379/0 \\
        --checkpoint var/run/checkpoints/predict_stream [--tickers AAA,BBB] [--trigger '100 milliseconds'] \\
        [--metrics-port 9108] [--stop-when-idle 20]

(``hft stream`` runs exactly this.) MLflow comes from ``MLFLOW_TRACKING_URI`` (default: the sqlite store
under ``HFT_HOME``).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

log = logging.getLogger("hft.streaming.predict_stream")


def parse_args(argv: list[str]) -> argparse.Namespace:
    from hft.stack import StackConfig

    stack = StackConfig.from_env()  # the local stack's addresses (HFT_*_PORT), defined once there
    p = argparse.ArgumentParser(description="Kafka bars -> features -> champion model -> Redis")
    p.add_argument("--bootstrap", default=stack.kafka_bootstrap)
    p.add_argument("--redis", default=stack.redis_url)
    p.add_argument("--checkpoint", required=True, help="Spark checkpoint folder (offsets, commits)")
    p.add_argument("--tickers", type=lambda s: [t.strip().upper() for t in s.split(",") if t.strip()],
                   help="the universe; other tickers go to the DLQ as unknown_ticker (default: every valid ticker)")
    p.add_argument("--trigger", default="100 milliseconds",
                   help="micro-batch interval (under load a micro-batch takes longer, and the next starts at once)")
    p.add_argument("--max-offsets", type=int, default=20000, help="max messages per micro-batch")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI")
    p.add_argument("--model-refresh-s", type=float, default=5.0, help="how often to check the champion alias")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port on 127.0.0.1 (0: off)")
    p.add_argument("--jvm-metrics-port", type=int, default=0,
                   help="the driver JVM's JMX exporter port, announced to Prometheus (set by hft stream; 0: none)")
    p.add_argument("--stop-when-idle", type=float, default=0, help="stop after this many seconds without input (0: never)")
    p.add_argument("--starting-offsets", default="earliest", choices=["earliest", "latest"])
    p.add_argument("--engine", default="driver", choices=["driver", "tasks"],
                   help="driver: each micro-batch processed in the driver; tasks: per ticker in Spark's tasks, the "
                   "feature state in Spark's state store (hft.streaming.keyed)")
    p.add_argument("--state-partitions", type=int, default=4,
                   help="tasks engine: state partitions (the most tasks a micro-batch runs in parallel); fixed by the "
                   "checkpoint's first batch")
    return p.parse_args(argv)


def checkpoint_is_new(checkpoint: str) -> bool:
    """Whether Spark has never committed an offset to this checkpoint folder (missing, empty, or without
    offset files)."""
    from pathlib import Path

    offsets = Path(checkpoint) / "offsets"
    return not offsets.is_dir() or not any(p.name.isdigit() for p in offsets.iterdir())


def starting_offsets(args, store) -> str:
    """``--starting-offsets``, unless the checkpoint is new and Redis holds committed offsets: then those,
    so a lost or replaced checkpoint neither skips nor repeats what was committed."""
    from hft.streaming.kafka_io import partitions, starting_offsets_json
    from hft.streaming.messages import BARS_TOPIC

    committed = store.committed_offsets()
    if not checkpoint_is_new(args.checkpoint) or not any(t == BARS_TOPIC for t, _ in committed):
        return args.starting_offsets
    resume = starting_offsets_json(BARS_TOPIC, committed, partitions(args.bootstrap, BARS_TOPIC))
    log.warning("checkpoint %s is new but Redis holds committed offsets: resuming from them (%s)",
                args.checkpoint, resume, extra={"hft": {"starting_offsets": resume}})
    return resume


#: The checkpoint manager for a local folder (streaming/jvm, built by ``make setup``, on the classpath through
#: ``hft stack jars``). Spark's default forks a ``readlink`` and a ``chmod`` from the JVM for each of the two
#: files a micro-batch writes (Hadoop without its native library): ~30 ms of walCommit and of commitOffsets
#: per batch, most of the job's fixed cost (bench/streaming).
LOCAL_CHECKPOINT_MANAGER = "hft.spark.LocalCheckpointFileManager"
CHECKPOINT_MANAGER_CONF = "spark.sql.streaming.checkpointFileManagerClass"


def checkpoint_conf(checkpoint: str) -> dict[str, str]:
    """Spark SQL settings for the checkpoint folder: a local one (a path or ``file:``) is written by
    :data:`LOCAL_CHECKPOINT_MANAGER`, still to a temporary file renamed into place (a POSIX rename, atomic;
    the job is the folder's only writer), without forks and without ``.crc`` sidecars. Other file systems
    (HDFS, object stores) keep Spark's default."""
    from urllib.parse import urlparse

    if urlparse(str(checkpoint)).scheme not in ("", "file"):
        return {}
    return {CHECKPOINT_MANAGER_CONF: LOCAL_CHECKPOINT_MANAGER}


def apply_checkpoint_conf(spark, checkpoint: str) -> None:
    """Set :func:`checkpoint_conf` on the session; without the project's jar on the classpath (a
    hand-written spark-submit without ``hft stack jars``), Spark's default, with a warning saying why."""
    conf = checkpoint_conf(checkpoint)
    if conf and not spark.sparkContext._jvm.org.apache.spark.util.Utils.classIsLoadable(LOCAL_CHECKPOINT_MANAGER):
        log.warning("%s is not on the classpath (pass --jars \"$(hft stack jars)\"): Spark's default checkpoint "
                    "manager forks processes for every micro-batch", LOCAL_CHECKPOINT_MANAGER)
        return
    for key, value in conf.items():
        spark.conf.set(key, value)


def source(spark, args, offsets: str, options: dict[str, str] | None = None):
    """Kafka ``market.bars``: key, value and their coordinates (no parsing here: bad bytes must reach the DLQ);
    ``options``: more Kafka source options, or other values for these (bench/streaming's spark-tuned)."""
    from hft.kafka_conn import spark_options
    from hft.streaming.messages import BARS_TOPIC

    return (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", args.bootstrap)
        .options(**spark_options())  # the stack's user (hft.kafka_conn); Spark redacts the JAAS line in its logs
        .option("subscribe", BARS_TOPIC)
        .option("startingOffsets", offsets)
        .option("maxOffsetsPerTrigger", args.max_offsets)
        .option("failOnDataLoss", "true")
        # The broker holds a fetch at the log's end this long: the default 500 ms stalls micro-batches, and
        # 10 rather than 50 cut the p99 latency at 5,000 bars/s from 439 to 311 ms (bench/streaming).
        .option("kafka.fetch.max.wait.ms", "10")
        # A partition leader killed (Kafka cluster): the driver's offset lookup (an AdminClient listOffsets) kept
        # waiting for the dead leader for the whole default.api.timeout.ms (60 s) before its retry found the new
        # one (game day: 61 s without predictions). 5 s per try (a request may not outlast its call), retried
        # (a try fails fast while no leader is elected, 3-5 s), so the stream goes on soon after the election.
        .option("kafka.default.api.timeout.ms", "5000")
        .option("kafka.request.timeout.ms", "5000")
        .option("fetchOffset.numRetries", "12")
        .option("fetchOffset.retryIntervalMs", "500")
        .options(**(options or {}))
        .load()
        .select("key", "value", "topic", "partition", "offset")
    )


def processor(args, spec):
    """The per-batch transform and sinks: DLQ, Redis, Kafka ``predictions``; the features of ``spec``
    (:meth:`hft.features.definitions.FeatureSpec.from_env`)."""
    from hft.observability.metrics import record_batch
    from hft.streaming.champion import ChampionModel
    from hft.streaming.kafka_io import KafkaLag, TopicSink
    from hft.streaming.messages import BARS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC
    from hft.streaming.processor import BatchProcessor, check_features
    from hft.streaming.store import RedisStore

    model = ChampionModel(args.tracking_uri, refresh_s=args.model_refresh_s,
                          accept=lambda predictor: check_features(predictor.features, spec))
    model()  # fail at start, clearly, when there is no champion (or none this job can serve)
    predictions = TopicSink(args.bootstrap, PREDICTIONS_TOPIC, "hft-stream-predictions")
    store = RedisStore.from_url(args.redis)
    lag = KafkaLag(args.bootstrap, BARS_TOPIC)

    def on_result(result) -> None:
        record_batch(result)
        lag.update(store.committed_offsets)

    return BatchProcessor(
        store=store,
        model=model,
        dlq=TopicSink(args.bootstrap, DLQ_TOPIC, "hft-stream-dlq").send,  # acknowledged before the commit
        publish=predictions.post,  # after the commit: not waited for (see BatchProcessor)
        known_tickers=args.tickers,
        spec=spec,
        on_result=on_result,
        flush=predictions.flush,
    )


def sink(stream, proc, args):
    from hft.streaming.processor import Record

    def each_batch(df, batch_id: int) -> None:
        # Arrow, column by column: much cheaper than df.collect()'s Row objects for thousands of messages.
        t = df.toArrow()
        cols = [t.column(c).to_pylist() for c in ("key", "value", "partition", "offset", "topic")]
        proc.process(batch_id, [Record(*r) for r in zip(*cols)])

    return (
        stream.writeStream.queryName("hft_predict_stream")
        .foreachBatch(each_batch)
        .option("checkpointLocation", args.checkpoint)
        .trigger(processingTime=args.trigger)
        .start()
    )


def wait(query, idle_s: float, heartbeat, on_progress=None) -> None:
    """Run until stopped (or ``idle_s`` without input), refreshing the job's heartbeat in Redis; ``on_progress``
    is called with each micro-batch's progress report, once."""
    last_input = time.monotonic()
    reported = -1
    while query.isActive:
        heartbeat()
        query.awaitTermination(1)
        if on_progress is not None:
            for progress in query.recentProgress:
                if progress["batchId"] > reported:
                    reported = progress["batchId"]
                    on_progress(progress)
        if not idle_s:
            continue
        progress = query.lastProgress
        if (progress and progress.get("numInputRows", 0) > 0) or query.status.get("isDataAvailable"):
            last_input = time.monotonic()  # a micro-batch still running is not idle (the first one can be long)
        if time.monotonic() - last_input > idle_s:
            log.info("no input for %.0fs, stopping", idle_s)
            query.stop()
    if query.exception():
        raise RuntimeError(str(query.exception()))


def quiet_spark_logs(spark) -> None:
    """Spark's JVM at WARN once started (at INFO it logs ~150 lines per micro-batch), except its progress
    report per micro-batch (``Streaming query made progress: {...}``), which stays at INFO."""
    jvm = spark.sparkContext._jvm
    configurator, level = jvm.org.apache.logging.log4j.core.config.Configurator, jvm.org.apache.logging.log4j.Level
    configurator.setRootLevel(level.WARN)
    configurator.setLevel("org.apache.spark.sql.execution.streaming.runtime.ProgressReporter", level.INFO)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from hft.observability.logging import configure_logging
    from hft.observability.metrics import serve

    configure_logging(service="hft-predict-stream")
    serve(args.metrics_port, "stream")
    if args.jvm_metrics_port:  # the driver JVM's JMX exporter agent (spark-submit --driver-java-options)
        from hft.observability.discovery import register

        register("spark-driver", args.jvm_metrics_port)
    from pyspark.sql import SparkSession

    from hft.errors import UserError
    from hft.features.definitions import FeatureSpec
    from hft.streaming.champion import NoChampionError

    spark = SparkSession.builder.appName("hft-predict-stream").getOrCreate()
    apply_checkpoint_conf(spark, args.checkpoint)
    quiet_spark_logs(spark)
    proc = None
    try:
        spec = FeatureSpec.from_env()  # the market and sector context (HFT_MARKET_TICKER, HFT_SECTORS)
        if args.engine == "tasks":
            run_in_tasks(spark, args, spec)
            return 0
        proc = processor(args, spec)
        query = sink(source(spark, args, starting_offsets(args, proc.store)), proc, args)
        wait(query, args.stop_when_idle, proc.store.mark_running)
        return 0
    except (NoChampionError, UserError) as exc:
        log.error("%s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if proc is not None:
            proc.close()  # predictions still in flight to Kafka
        spark.stop()


def run_in_tasks(spark, args, spec) -> None:
    """The ``tasks`` engine (:mod:`hft.streaming.keyed`), until stopped. A new checkpoint holds no feature state:
    the job then starts from ``--starting-offsets`` and rebuilds it, the predictions Redis already holds being
    recognised and not written again."""
    from hft.model.registry import default_tracking_uri
    from hft.streaming import keyed
    from hft.streaming.champion import ChampionModel
    from hft.streaming.store import RedisStore

    tracking_uri = args.tracking_uri or default_tracking_uri()  # the tasks get it, not the driver's environment
    # fail at start, clearly, when there is no champion (or none this job can serve)
    _, served = ChampionModel(tracking_uri, accept=keyed.servable(spec, args.tickers))()
    store = RedisStore.from_url(args.redis)
    if checkpoint_is_new(args.checkpoint) and store.r.hlen(store.keys.pred_written):
        log.warning("checkpoint %s is new: the feature state is rebuilt from %s offsets; predictions already in "
                    "Redis are not written again", args.checkpoint, args.starting_offsets)
    keyed.configure(spark, args.state_partitions)
    query = keyed.stateful_query(source(spark, args, args.starting_offsets), args, tracking_uri, spec, served)
    wait(query, args.stop_when_idle, store.mark_running, keyed.record_progress)


if __name__ == "__main__":
    sys.exit(main())
