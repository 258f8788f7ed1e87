"""The engines under test (Spark's micro-batch job, the plain-Python consumer) and running one through the
phases on the shared stack."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from streamlab.common import ENTRY, HOME, ROOT, VENV_BIN, Engine, free_ports, load_avg, pid_ticks, say
from streamlab.data import Phase
from streamlab.measure import Row, StreamReader, collect, iso_ns, phase_row, scrape, spark_progress, worker_stats
from streamlab.producer import produce


@dataclass
class Ctx:
    args: argparse.Namespace
    config: object
    env: dict
    tickers: list
    warm: Phase
    jit: list  # JIT warm-up rounds, each a list of Phases of the warm-up tickers (see warm_jit)
    phases: list
    redis: object
    probs: dict = field(default_factory=dict)  # engine -> {(ticker, bar ts): probability}


def reset(ctx: Ctx) -> None:
    """Delete and create the stream topics again, flush Redis."""
    from hft.stack import ensure_topics, stream_topics
    from hft.stack.kafka import admin_client

    topics = stream_topics()
    admin = admin_client(ctx.config.kafka_bootstrap)
    existing = [t for t in admin.list_topics(timeout=15).topics if t in topics]
    if existing:
        for fut in admin.delete_topics(existing, operation_timeout=30).values():
            fut.result()
        deadline = time.monotonic() + 60
        while set(admin.list_topics(timeout=15).topics) & set(topics):
            if time.monotonic() > deadline:
                raise RuntimeError("topics not deleted after 60s")
            time.sleep(0.2)
    for attempt in range(50):
        try:
            ensure_topics(ctx.config.kafka_bootstrap, topics)
            break
        except Exception:  # noqa: BLE001 - "marked for deletion" for a moment after a delete
            if attempt == 49:
                raise
            time.sleep(0.3)
    ctx.redis.flushdb()


def warm_broker(ctx: Ctx, messages: int = 200_000) -> float:
    """Produce and consume a scratch topic, so the broker's JIT is warm before the first engine."""
    from confluent_kafka import Consumer

    from hft.kafka_conn import client_config
    from hft.stack import TopicSpec, ensure_topics
    from hft.streaming.kafka_io import producer

    t0 = time.monotonic()
    topic = "bench.warmup"
    ensure_topics(ctx.config.kafka_bootstrap, {topic: TopicSpec(partitions=ctx.args.partitions, retention_ms=600_000)})
    p = producer(ctx.config.kafka_bootstrap, "bench-warmup")
    body = b"x" * 230
    for i in range(messages):
        while True:
            try:
                p.produce(topic, value=body, key=str(i % 20).encode())
                break
            except BufferError:
                p.poll(0.01)
        if i % 1000 == 0:
            p.poll(0)
    p.flush(60)
    c = Consumer(client_config(ctx.config.kafka_bootstrap, {"group.id": "bench-warmup", "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = 0, time.monotonic() + 60
    while got < messages and time.monotonic() < deadline:
        got += len(c.consume(num_messages=10000, timeout=0.5))
    c.close()
    return time.monotonic() - t0


def warm_jit(ctx: Ctx, name: str, engine: Engine, reader: StreamReader) -> None:
    """Rounds of bars of the warm-up tickers (their own series, so stopping early leaves no gap in the
    measured tickers' time), each at the rates of the phases, until the engine's JIT compiler threads used
    less than ``--jit-quiet`` cores over a round (at least ``--jit-min-rounds``): Spark's JVM compiles its
    per-batch paths for minutes of mixed rates, and that compiling is not the job's steady-state cost."""
    from hft.streaming.messages import BARS_TOPIC

    args, tck = ctx.args, os.sysconf("SC_CLK_TCK")
    for n, round_ in enumerate(ctx.jit, 1):
        t0, jit0 = time.monotonic(), engine.jit_ticks()
        p99 = []
        for phase in round_:
            sent = produce(ctx.config.kafka_bootstrap, phase.msgs, phase.rate, BARS_TOPIC)
            row = phase_row(name, phase, sent, collect(reader, phase.expected, engine, timeout_s=300,
                                                       stall_s=args.stall_s))
            p99.append(f"{phase.rate:,.0f}/s p99 {row.p99:,.0f} ms")
        jit = (engine.jit_ticks() - jit0) / tck / (time.monotonic() - t0)
        say(f"   JIT warm-up round {n}: {', '.join(p99)}; JIT compiler threads {jit:.2f} cores (not reported)")
        if n >= args.jit_min_rounds and jit < args.jit_quiet:
            return
    say(f"   !! the JIT was still compiling after {len(ctx.jit)} rounds: the phases include its work")


def run_engine(ctx: Ctx, name: str, start) -> list[Row]:
    from hft.streaming.messages import BARS_TOPIC
    from hft.streaming.store import RedisStore

    args = ctx.args
    reset(ctx)
    say(f"\n== {name}: starting ({load_avg()})")
    metrics_port = free_ports(1)[0]
    engine: Engine = start(metrics_port)
    rows: list[Row] = []
    try:
        reader = StreamReader(ctx.redis, RedisStore(ctx.redis).stream_key)
        t0 = time.monotonic()
        produce(ctx.config.kafka_bootstrap, ctx.warm.msgs, 0, BARS_TOPIC)
        got = collect(reader, ctx.warm.expected, engine, timeout_s=300, stall_s=240)
        if len(got) < len(ctx.warm.expected):
            raise RuntimeError(f"{name}: warm-up gave {len(got)}/{len(ctx.warm.expected)} predictions:\n{engine.tail()}")
        say(f"   running: warm-up session of {len(ctx.warm.msgs)} bars predicted {time.monotonic() - t0:.1f}s after start")
        warm_jit(ctx, name, engine, reader)
        time.sleep(2.0)
        reader.read()
        from hft import stack

        pids = {svc: st.pid for svc, st in stack.status(ctx.config).items() if svc in ("kafka", "redis")}
        tck = os.sysconf("SC_CLK_TCK")
        probs = ctx.probs.setdefault(name, {})
        for phase in ctx.phases:
            log_pos = len(engine.log_text())
            before, cpu0, jit0 = scrape(metrics_port), engine.cpu_ticks(), engine.jit_ticks()
            svc0, self0 = {k: pid_ticks(v) for k, v in pids.items()}, os.times()
            sent = produce(ctx.config.kafka_bootstrap, phase.msgs, phase.rate, BARS_TOPIC)
            got = collect(reader, phase.expected, engine, timeout_s=max(120.0, 10 * len(phase.msgs) / max(phase.rate, 1)),
                          stall_s=args.stall_s)
            cpu1, jit1, after = engine.cpu_ticks(), engine.jit_ticks(), scrape(metrics_port)
            svc1, self1 = {k: pid_ticks(v) for k, v in pids.items()}, os.times()
            row = phase_row(name, phase, sent, got)
            row.load1 = os.getloadavg()[0]
            probs.update({key: f["probability"] for key, (_, f) in got.items()})
            row.cpu_ms_per_1k = (cpu1 - cpu0) / tck * 1000 / (len(phase.msgs) / 1000)
            row.jit_cores = (jit1 - jit0) / tck / max(row.wall_s, 1e-9)
            row.cpu = {"engine": (cpu1 - cpu0) / tck, **{k: (svc1[k] - svc0[k]) / tck for k in pids},
                       "bench (producer)": (self1.user + self1.system) - (self0.user + self0.system)}
            text = engine.log_text()[log_pos:]
            end_ns = sent.first_ns + int(row.wall_s * 1e9)
            if name.startswith(("spark", "tasks")):  # the tasks engine's processor metrics are 0: in its tasks
                proc_s = after.get("hft_stream_batch_duration_seconds_sum", 0) - before.get("hft_stream_batch_duration_seconds_sum", 0)
                infer_s = after.get("hft_stream_inference_latency_seconds_sum", 0) - before.get("hft_stream_inference_latency_seconds_sum", 0)
                progs = [p for p in spark_progress(text) if p.get("numInputRows", 0) > 0
                         and sent.first_ns - 2e9 <= iso_ns(p["timestamp"]) <= end_ns]
                dur = lambda k, progs=progs: sum(p["durationMs"].get(k, 0) for p in progs) / 1000  # noqa: E731
                row.batches = len(progs)
                row.mean_batch = sum(p["numInputRows"] for p in progs) / max(1, len(progs))
                trig, add = dur("triggerExecution"), dur("addBatch")
                row.parts = {"trigger": trig, "addBatch": add, "processor": proc_s, "inference": infer_s,
                             "collect+py4j": add - proc_s, "spark bookkeeping": trig - add,
                             "latestOffset": dur("latestOffset"), "walCommit": dur("walCommit"),
                             "commitOffsets": dur("commitOffsets"), "queryPlanning": dur("queryPlanning")}
            else:
                stats = [s for s in worker_stats(text) if s["n"] > 0]
                proc_s = sum(s["proc_s"] for s in stats)
                row.batches = len(stats)
                row.mean_batch = sum(s["n"] for s in stats) / max(1, len(stats))
                row.parts = {"processor": proc_s, "inference": sum(s["infer_s"] for s in stats),
                             "consume wait": sum(s["wait_s"] for s in stats)}
            row.proc_us_per_bar = proc_s / len(phase.msgs) * 1e6
            rows.append(row)
            say(f"   {phase.label:>10}: offered {phase.rate:,.0f}/s sent {sent.rate:,.0f}/s "
                 f"achieved {row.achieved:,.0f}/s, {row.predictions}/{row.expected} predictions, "
                 f"p50 {row.p50:,.0f} ms p99 {row.p99:,.0f} ms, {row.batches} batches of {row.mean_batch:,.0f} "
                 f"({load_avg()})")
            if row.predictions < row.expected:
                say(f"   !! {row.expected - row.predictions} predictions missing after {args.stall_s:.0f}s without progress")
            time.sleep(1.0)
            reader.read()
    finally:
        engine.stop()
    return rows


def start_spark(ctx: Ctx, trigger: str, tag: str):
    def start(metrics_port: int) -> Engine:
        checkpoint = ctx.config.run_dir / "checkpoints" / f"bench-{tag}-{time.time_ns()}"
        cmd = [str(VENV_BIN / "hft"), "stream", "--master", ctx.args.master, "--tickers", ",".join(ctx.tickers),
               "--trigger", trigger, "--checkpoint", str(checkpoint), "--metrics-port", str(metrics_port)]
        return Engine(f"spark {trigger}", cmd, HOME / "logs" / f"{tag}.log", ctx.env)
    return start


def start_tasks(ctx: Ctx, trigger: str, tag: str, master: str, groups: tuple[int, ...] = ()):
    """``hft stream --engine tasks`` (per-ticker state and inference in Spark's tasks) on ``master``; ``groups``:
    the process groups of a standalone cluster's workers (their executors' CPU is the engine's)."""
    def start(metrics_port: int) -> Engine:
        checkpoint = ctx.config.run_dir / "checkpoints" / f"bench-{tag}-{time.time_ns()}"
        cmd = [str(VENV_BIN / "hft"), "stream", "--engine", "tasks", "--master", master, "--tickers",
               ",".join(ctx.tickers), "--trigger", trigger, "--checkpoint", str(checkpoint), "--metrics-port",
               str(metrics_port), "--state-partitions", str(ctx.args.state_partitions)]
        return Engine(f"tasks {trigger}", cmd, HOME / "logs" / f"{tag}.log", ctx.env, groups)
    return start


def start_spark_tuned(ctx: Ctx, trigger: str, tuned: str, tag: str):
    """The same job through :func:`spark_job` (this file spark-submitted as the driver) with ``tuned``."""
    def start(metrics_port: int) -> Engine:
        from hft.spark_submit import spark_submit_command
        from hft.stack import streaming_jars

        checkpoint = ctx.config.run_dir / "checkpoints" / f"bench-{tag}-{time.time_ns()}"
        job = ["--bootstrap", ctx.config.kafka_bootstrap, "--redis", ctx.config.redis_url, "--checkpoint",
               str(checkpoint), "--trigger", trigger, "--metrics-port", str(metrics_port), "--stop-when-idle", "0",
               "--tickers", ",".join(ctx.tickers)]
        opts = [o.strip() for o in tuned.split(",") if o.strip()]
        cmd = spark_submit_command("bench/streaming.py", ["--_spark_job", *opts, "--", *job], ctx.args.master,
                                   jars=streaming_jars())
        from hft.config import SPARK_LOCAL_ENV

        env = {**ctx.env, **SPARK_LOCAL_ENV, "PYSPARK_PYTHON": sys.executable, "OPENBLAS_NUM_THREADS": "1"}
        return Engine(f"spark-tuned {trigger}", cmd, HOME / "logs" / f"{tag}.log", env)
    return start


def start_python(ctx: Ctx):
    def start(metrics_port: int) -> Engine:
        cmd = [sys.executable, str(ENTRY), "--_worker", "python",
               "--_bootstrap", ctx.config.kafka_bootstrap, "--_redis", ctx.config.redis_url,
               "--_tickers", ",".join(ctx.tickers), "--_group", f"bench-python-{time.time_ns()}",
               "--py-timeout-ms", str(ctx.args.py_timeout_ms), "--py-max-batch", str(ctx.args.py_max_batch)]
        env = {**ctx.env, "OPENBLAS_NUM_THREADS": "1"}  # as `hft stream` runs the job
        return Engine("python", cmd, HOME / "logs" / "python.log", env)
    return start


def predict_stream_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_stream", ROOT / "streaming" / "predict_stream.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def next_batch(consumer, n: int, timeout_s: float, drain: bool = False) -> list:
    """The next batch of a confluent-kafka consumer, of at most ``n`` messages.

    ``drain`` False (bench/streaming): ``consume(n, timeout_s)``, which returns once ``n`` messages are
    there or ``timeout_s`` has passed: under ``n`` messages per window, every call lasts the whole window.
    ``drain`` True (bench/e2e): whatever is queued at once; when nothing is, block until the first message
    arrives (at most ``timeout_s``), then take what is queued behind it: a batch is what came in while the
    previous one was being processed, and no message waits for a window to close."""
    if not drain:
        return consumer.consume(num_messages=n, timeout=timeout_s)
    msgs = consumer.consume(num_messages=n, timeout=0)
    if msgs:
        return msgs
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(num_messages=n - 1, timeout=0)] if n > 1 else [first]


def python_worker(args: argparse.Namespace) -> int:
    """The plain-Python baseline: Kafka consumer loop -> the job's BatchProcessor (same sinks, same model)."""
    from confluent_kafka import Consumer

    from hft.kafka_conn import client_config
    from hft.observability.logging import configure_logging
    from hft.streaming.messages import BARS_TOPIC
    from hft.streaming.processor import Record

    configure_logging(service="bench-python-consumer")  # the job logs every batch too
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ps = predict_stream_module()
    proc = ps.processor(argparse.Namespace(tracking_uri=None, model_refresh_s=5.0, redis=args._redis,
                                           bootstrap=args._bootstrap, tickers=args._tickers.split(",")))
    # The broker answers a fetch once 64 KB are there or after 50 ms: without it librdkafka's background
    # prefetch sends a fetch per producer batch (hundreds a second), which costs the broker CPU we share.
    # (bench/e2e passes its own fetch settings, a drain loop and a metrics port; bench/streaming sets none.)
    consumer = Consumer(client_config(args._bootstrap, {"group.id": args._group,
                                                        "auto.offset.reset": "earliest", "enable.auto.commit": False,
                                                        "fetch.wait.max.ms": getattr(args, "fetch_wait_ms", 50),
                                                        "fetch.min.bytes": getattr(args, "fetch_min_bytes", 65536)}))
    consumer.subscribe([BARS_TOPIC])
    if getattr(args, "_metrics_port", None):  # the processor's Prometheus metrics (hft_path_latency_seconds...)
        from prometheus_client import start_http_server

        start_http_server(int(args._metrics_port), addr="127.0.0.1")
    drain = getattr(args, "py_drain", False)
    batch_id = proc.store.last_batch() + 1
    timeout = args.py_timeout_ms / 1000
    try:
        while not stop:
            t0 = time.perf_counter()
            msgs = next_batch(consumer, args.py_max_batch, timeout, drain)
            t1 = time.perf_counter()
            records = [Record(m.key(), m.value(), m.partition(), m.offset(), m.topic()) for m in msgs if m.error() is None]
            if not records:
                continue
            result = proc.process(batch_id, records)
            batch_id += 1
            consumer.commit(asynchronous=True)
            print("BENCHBATCH " + json.dumps({"ns": time.time_ns(), "n": len(records), "wait_s": t1 - t0,
                                               "proc_s": result.duration_s, "infer_s": result.inference_s,
                                               "stages": result.stage_ns}), flush=True)
    finally:
        consumer.close()
        proc.close()
    return 0


def spark_job(argv: list[str]) -> int:
    """Driver of ``streaming/predict_stream.py`` with opt-in changes that keep its results identical, to
    measure them (``spark-tuned``): ``k=v`` options before ``--``, the job's own arguments after it.

    * ``source.<option>=<value>``: a Kafka source option (e.g. ``source.kafka.fetch.max.wait.ms=50``);
    * ``conf.<key>=<value>``: a Spark SQL setting, set after the job's own (e.g.
      ``conf.spark.sql.streaming.checkpointFileManagerClass=<class>``).
    """
    cut = argv.index("--")
    opts = dict(x.split("=", 1) for x in argv[:cut])
    ps = predict_stream_module()
    extra = {k[len("source."):]: v for k, v in opts.items() if k.startswith("source.")}
    conf = {k[len("conf."):]: v for k, v in opts.items() if k.startswith("conf.")}
    base_source, base_conf = ps.source, ps.apply_checkpoint_conf

    def source(spark, a, offsets, options=None):
        return base_source(spark, a, offsets, {**(options or {}), **extra})

    def apply_conf(spark, checkpoint):
        base_conf(spark, checkpoint)
        for key, value in conf.items():
            spark.conf.set(key, value)

    ps.source, ps.apply_checkpoint_conf = source, apply_conf
    return ps.main(argv[cut + 1:])


def ensure_champion(home: Path) -> str:
    """A champion in the sqlite MLflow store under ``home`` (trained like the integration test, once)."""
    from hft.model import registry

    version = registry.alias_version(registry.client(), "champion")
    if version is not None:
        return f"reused champion version {version}"
    from datetime import timezone

    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.training import train

    t0 = time.monotonic()
    bars = SyntheticSource().fetch(["AAA", "BBB"], datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 20, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars, FeatureSpec.from_env()))
    cfg = ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64))
    reg = registry.log_training(train(frame, features, cfg), {}, None)
    registry.promote(reg.version, "bench")
    return f"trained and promoted version {reg.version} in {time.monotonic() - t0:.0f}s"
