"""Benchmark of streaming inference: Spark Structured Streaming (``hft stream``) against a plain-Python consumer.

Run from the repository root (about 15 minutes on 2 cores with the defaults, 18 with ``spark-tuned``)::

    .venv/bin/python bench/streaming.py [--bars 60000] [--rate 5000] [--tickers 20]
                                         [--sweep 1000,2000,10000] [--sweep-seconds 15]
                                         [--triggers '100 milliseconds,250 milliseconds']
                                         [--engines python,spark,realtime[,spark-tuned]] [--json PATH]

Set-up (everything under ``var/bench-streaming``, git-ignored): a Kafka broker and Redis of its own
(:mod:`hft.stack`, free loopback ports; stopped at the end, on error too), ``market.bars`` with
``--partitions`` (4) partitions, and a tiny ``champion`` model in a sqlite MLflow store (trained once like
``tests/integration/test_streaming.py`` does, about 40 s, then reused by later runs).

Data: synthetic 1m bars (:func:`hft.streaming.collectors.synthetic`) for ``--tickers`` tickers over
consecutive sessions, in time order. A bar yields a prediction only when its features are complete: the
first ``FeatureSpec().max_lookback - 1`` bars of each ticker's session are "warming up" (about 8% of the
bars); which bars should yield one is computed beforehand with the reference feature code, so every run
knows exactly how many predictions to wait for.

Engines, run one after the other on the same stack (its broker warmed up first with 200,000 scratch
messages, so the first engine does not pay for the broker's JIT); before each, the three topics are
deleted and created again and Redis is flushed, and each gets its own checkpoint / consumer group:

* ``spark <trigger>``: ``hft stream --master local[2] --trigger <trigger>`` as a subprocess (spark-submit of
  ``streaming/predict_stream.py``: Kafka source -> ``foreachBatch`` -> ``df.toArrow()`` ->
  :class:`hft.streaming.processor.BatchProcessor` -> Redis + Kafka ``predictions``), once per ``--triggers``.
* ``python``: a confluent-kafka consumer loop in a subprocess of this script (a baseline, not product code):
  ``consume(num_messages=--py-max-batch, timeout=--py-timeout-ms)``, then the same ``BatchProcessor``
  built by the job's own ``predict_stream.processor()`` (same RedisStore, ChampionModel, DLQ and
  ``predictions`` sinks), with a monotonically increasing batch id. Its consumer asks the broker to answer
  fetches at 64 KB or 50 ms (``fetch.min.bytes`` / ``fetch.wait.max.ms``) rather than per producer batch.
* ``spark-tuned <trigger>`` (opt-in): the same job, spark-submitted through this file (:func:`spark_job`)
  with changes that keep its results identical, to measure them (``--tuned``, default: Kafka source option
  ``kafka.fetch.max.wait.ms=50``, the job's former setting, instead of its 10).

Per engine: a warm-up session (one trading day of bars, sent unpaced; the engine counts as running once all
its predictions are in Redis), then JIT warm-up rounds, waited for but not reported: each ``--jit-seconds``
of bars at 1,000/s then at ``--rate``, of ``--tickers`` other tickers (``W000``..., in the job's universe;
their own series, so the measured tickers' bars stay contiguous), until the engine's JIT compiler threads
(HotSpot's ``C1/C2 CompilerThread``, read from /proc) used under ``--jit-quiet`` cores over a round, after
at least ``--jit-min-rounds`` and at most ``--jit-rounds`` rounds. Spark's JVM compiles its per-batch paths
for minutes of mixed rates (measured: ~0.3-0.5 cores of compiling in every phase of a run warmed 15 s,
still 0.28 cores three minutes in); that work is the JVM's start, not the job's steady state, and the
column ``jit`` shows what is left of it in each phase. Then one phase per offered rate, lowest first:
``--bars`` bars at ``--rate`` and, for each ``--sweep`` rate, ``min(--bars, rate * --sweep-seconds)`` bars. The producer (this process,
confluent-kafka, the project's idempotent acks=all producer settings) paces sends to the offered rate and
encodes every bar beforehand with :func:`hft.streaming.messages.encode_bar` and appends
``"produced_ns": time.time_ns()`` at send time (it shares the 2 cores with what it measures). A phase ends
when every expected prediction is in the Redis stream (or nothing new came for ``--stall-s`` seconds); while
predictions arrive this process polls only the stream's entries-added counter and reads the entries once
all are there. The next phase starts from an idle engine.

Measured per phase:

* latency = ``written_ns - produced_ns`` of every prediction in the Redis stream (``RedisStore.stream()``;
  both wall clock on this machine): p50 / p99 / p99.9 / max and the count. ``written_ns`` is stamped when
  the commit pipeline is built, just before MULTI/EXEC; the column ``vis p99`` uses the stream entry id
  instead (Redis' own clock at EXEC, ms resolution): when the prediction became readable.
* achieved bars/s = bars of the phase / (last prediction written - first bar produced). An engine
  *sustains* a rate when it achieves >= 95% of it (a stream that keeps up loses only its final latency
  over a phase of 10+ s) with p99 <= 500 ms. The achieved rate at the highest offered rate is the engine's
  capacity on this machine.
* where the time goes: micro-batches and mean batch size; the BatchProcessor's own time per bar (Prometheus
  metrics of the job / the consumer's timing); for Spark, the trigger's parts from its progress reports
  (``addBatch`` = collect + BatchProcessor; the rest = offsets, WAL, planning); CPU ms per 1,000 bars of the
  engine's processes (from /proc) — the figure to trust when other work shares the machine — and the CPU
  of Kafka, Redis and the producer; the 1-minute load average at the end of each phase.
* identical results: every engine's probabilities are compared with the baseline's, bar by bar. The
  processor is the same code, but where batch boundaries fall changes float rounding in the rolling windows,
  so a few bars differ by < 1e-7; with the same batches the results are bit-identical.

``realtime`` tries Spark's real-time mode (``trigger(realTime=...)``, pyspark 4.2): a minimal Kafka ->
Python ``foreach`` writer query (decode + validate each bar, XADD its timestamps to Redis), first with a
1 s batch duration, then 5 s, on ``local[2]`` and on ``local[<partitions>]``; it reports what happens
(errors verbatim) and, when it runs, the latency of bars offered at --rt-rates. It is stateless and has no
model: real-time mode has no stateful operators before Spark 4.3 and no Python UDFs in its allowlist, so it
shows the transport's latency, not our job's.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

from streamlab.common import (
    HOME,
    ROOT,
    SUSTAIN_FRACTION,
    TARGET_P99_MS,
    TARGET_RATE,
    free_ports,
    load_avg,
    say,
    spark_ui_port,
)
from streamlab.data import Phase, make_data
from streamlab.engines import (
    Ctx,
    ensure_champion,
    python_worker,
    run_engine,
    spark_job,
    start_python,
    start_spark,
    start_spark_tuned,
    start_tasks,
    warm_broker,
)
from streamlab.measure import Row
from streamlab.realtime import realtime_worker, run_realtime
from streamlab.report import print_parts, print_table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bars", type=int, default=60000, help="bars of the headline phase (at --rate)")
    p.add_argument("--rate", type=float, default=5000, help="headline offered rate, bars/s")
    p.add_argument("--tickers", type=int, default=20)
    p.add_argument("--sweep", default="1000,2000,10000", help="more offered rates (bars/s), '' for none")
    p.add_argument("--sweep-seconds", type=float, default=15.0, help="length of a sweep phase (bars capped at --bars)")
    p.add_argument("--triggers", default="100 milliseconds,250 milliseconds", help="Spark micro-batch triggers to run")
    p.add_argument("--engines", default="python,spark,realtime",
                   help="of python,spark,spark-tuned,tasks,tasks-cluster,realtime")
    p.add_argument("--state-partitions", type=int, default=4, help="the tasks engines' state partitions")
    p.add_argument("--partitions", type=int, default=4, help="market.bars partitions")
    p.add_argument("--master", default="local[2]", help="Spark master of the micro-batch engines")
    p.add_argument("--tuned", default="source.kafka.fetch.max.wait.ms=50",
                   help="changes the opt-in engine spark-tuned makes to the job (see spark_job)")
    p.add_argument("--tuned-trigger", help="trigger of spark-tuned (default: the first of --triggers)")
    p.add_argument("--py-timeout-ms", type=float, default=100.0, help="plain-Python consume() timeout")
    p.add_argument("--py-max-batch", type=int, default=20000, help="plain-Python consume() num_messages "
                   "(the job's maxOffsetsPerTrigger)")
    p.add_argument("--jit-seconds", type=float, default=10.0,
                   help="length of each rate of a JIT warm-up round (1,000/s then --rate; bars capped at 85,000)")
    p.add_argument("--jit-rounds", type=int, default=4, help="most JIT warm-up rounds (0: none)")
    p.add_argument("--jit-min-rounds", type=int, default=2, help="fewest JIT warm-up rounds")
    p.add_argument("--jit-quiet", type=float, default=0.05,
                   help="JIT warm-up ends after a round whose compiler threads used fewer cores than this")
    p.add_argument("--stall-s", type=float, default=30.0, help="end a phase after this long without a new prediction")
    p.add_argument("--rt-durations", default="1 second,5 seconds", help="real-time batch durations to try, in order")
    p.add_argument("--rt-rates", default="1000,5000", help="offered rates for the real-time query")
    p.add_argument("--rt-seconds", type=float, default=10.0)
    p.add_argument("--rt-settle-s", type=float, default=8.0)
    p.add_argument("--rt-stall-s", type=float, default=15.0)
    p.add_argument("--json", help="write the results here too")
    for hidden in ("--_worker", "--_bootstrap", "--_redis", "--_tickers", "--_group", "--_master", "--_out_key",
                   "--_durations"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_spark_job"]:
        return spark_job(argv[1:])
    args = p.parse_args(argv)
    if args._worker == "python":
        return python_worker(args)
    if args._worker == "realtime":
        return realtime_worker(args)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    rates = sorted({args.rate, *(float(x) for x in args.sweep.split(",") if x.strip())})
    sizes = [args.bars if r == args.rate else min(args.bars, int(r * args.sweep_seconds)) for r in rates]
    if max(sizes) > 90_000:
        p.error("a phase must stay under 90,000 bars (the Redis stream keeps ~100,000 entries)")

    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / "logs").mkdir(exist_ok=True)
    kafka, controller, redis_port, mlflow, kafka_metrics, spark_master = free_ports(6)
    env = {"HFT_HOME": str(HOME), "HFT_KAFKA_PORT": str(kafka), "HFT_KAFKA_CONTROLLER_PORT": str(controller),
           "HFT_KAFKA_METRICS_PORT": str(kafka_metrics),
           "HFT_REDIS_PORT": str(redis_port), "HFT_MLFLOW_PORT": str(mlflow),
           "MLFLOW_TRACKING_URI": f"sqlite:///{HOME / 'mlflow.db'}", "HFT_BARS_PARTITIONS": str(args.partitions),
           "HFT_REPO_ROOT": str(ROOT), "HFT_SPARK_MASTER_PORT": str(spark_master),
           "HFT_SPARK_UI_PORT": str(spark_ui_port())}
    os.environ.update(env)
    import shutil

    from hft import stack
    from hft.redis_conn import connect

    config = stack.StackConfig.from_env()
    stack.down(config, ("kafka", "redis", "spark"))  # leftovers of an interrupted run (pid files under run/)
    shutil.rmtree(config.run_dir, ignore_errors=True)  # a fresh broker and Redis

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    rows: list[Row] = []
    realtime: list[dict] = []
    ctx = None
    say(f"bench/streaming: {os.cpu_count()} cores, {load_avg()}, python {sys.version.split()[0]}")
    try:
        t0 = time.monotonic()
        stack.up(config, ("kafka", "redis"))
        say(f"stack: kafka {config.kafka_bootstrap}, redis {config.redis_url} up in {time.monotonic() - t0:.0f}s")
        say(f"model: {ensure_champion(HOME)}")
        t0 = time.monotonic()
        names, warm, chunks, ready = make_data(args.tickers, 1, sizes)
        mk = lambda label, rate, msgs, ready: Phase(label, rate, msgs, {(m.ticker, m.ts_ms) for m in msgs} & ready)  # noqa: E731
        phases = [mk(f"{r:,.0f}/s", r, c, ready) for r, c in zip(rates, chunks)]
        jit_rates = sorted({1000.0, args.rate})
        jit_sizes = [min(85_000, int(r * args.jit_seconds)) for r in jit_rates] * args.jit_rounds
        jit_names, _, jit_chunks, jit_ready = make_data(args.tickers, 0, jit_sizes, prefix="W") if jit_sizes \
            else ([], [], [], set())
        jit = [[mk(f"jit {r:,.0f}/s", r, c, jit_ready) for r, c in zip(jit_rates, jit_chunks[i: i + len(jit_rates)])]
               for i in range(0, len(jit_chunks), len(jit_rates))]
        ctx = Ctx(args, config, {**os.environ}, names + jit_names, mk("warm-up", 0, warm, ready), jit, phases,
                  connect(config.redis_url))
        say(f"data: {args.tickers} tickers, warm-up {len(warm)} bars, phases "
             + ", ".join(f"{len(ph.msgs)} bars at {ph.rate:,.0f}/s ({len(ph.expected)} predictable)" for ph in phases)
             + f"; JIT warm-up: up to {len(jit)} rounds of {' + '.join(f'{len(p.msgs)} bars at {p.rate:,.0f}/s' for p in (jit[0] if jit else []))}"
            + f" of {len(jit_names)} other tickers ({time.monotonic() - t0:.0f}s to generate)")
        say(f"broker warm-up: 200,000 messages produced and consumed in {warm_broker(ctx):.0f}s")
        if "python" in engines:
            rows += run_engine(ctx, "python", start_python(ctx))
        if "spark" in engines:
            for trigger in [t.strip() for t in args.triggers.split(",") if t.strip()]:
                tag = "spark-" + re.sub(r"\W+", "", trigger)
                rows += run_engine(ctx, f"spark {trigger}", start_spark(ctx, trigger, tag))
        for engine in ("tasks", "tasks-cluster"):
            if engine not in engines:
                continue
            trigger = args.triggers.split(",")[0].strip()
            tag = f"{engine}-" + re.sub(r"\W+", "", trigger)
            if engine == "tasks":
                rows += run_engine(ctx, f"tasks {args.master} {trigger}", start_tasks(ctx, trigger, tag, args.master))
                continue
            for workers in (1, 2):
                cluster = dataclasses.replace(config, spark_workers=workers)
                stack.up(cluster, ("spark",))
                try:
                    groups = tuple(os.getpgid(st.pid) for name, st in stack.status(cluster).items()
                                   if name.startswith("spark-worker-") and st.pid)
                    rows += run_engine(ctx, f"tasks {workers} worker(s) {trigger}",
                                       start_tasks(ctx, trigger, f"{tag}-{workers}w", cluster.spark_master_url, groups))
                finally:
                    stack.down(cluster, ("spark",))
        if "spark-tuned" in engines:
            trigger = args.tuned_trigger or args.triggers.split(",")[0].strip()
            rows += run_engine(ctx, f"spark-tuned {trigger}", start_spark_tuned(ctx, trigger, args.tuned,
                                                                             "spark-tuned-" + re.sub(r"\W+", "", trigger)))
        if "realtime" in engines:
            realtime = run_realtime(ctx)
    finally:
        say(f"\nstack down: {stack.down(config, ('kafka', 'redis'))}")

    say(f"\n== Results ({time.monotonic() - started:.0f}s in all; {load_avg()}; latencies in ms, "
         f"'vis p99' from the Redis stream id; 'sustained' = achieved >= {SUSTAIN_FRACTION:.0%} of offered, "
         f"p99 <= {TARGET_P99_MS:.0f} ms, no prediction missing)\n")
    print_table(rows)
    print_parts(rows)
    base = ctx.probs.get("python") if ctx else None
    if base:
        say("\nSame predictions as the plain-Python baseline? (probabilities of the same bars; the processor is the "
             "same code, but\nwhere batch boundaries fall changes float rounding in the rolling windows: expect "
             "differences < 1e-7 on a few bars)")
        for eng, probs in ctx.probs.items():
            if eng == "python":
                continue
            common = base.keys() & probs.keys()
            diff = [k for k in common if probs[k] != base[k]]
            worst = max((abs(float(probs[k]) - float(base[k])) for k in diff), default=0.0)
            verdict = "identical" if not diff else ("same up to float rounding" if worst < 1e-7 else "DIFFERENT")
            say(f"  {eng:<28} {len(common)} bars compared, {len(diff)} differ (max |diff| {worst:.3g}): {verdict}")
    spark_rows = [r for r in rows if r.engine.startswith(("spark", "tasks"))]
    say(f"\nTarget (micro-batch): >= {TARGET_RATE:,} bars/s sustained with p99 <= {TARGET_P99_MS:.0f} ms:")
    for eng in dict.fromkeys(r.engine for r in rows):
        mine = [r for r in rows if r.engine == eng]
        ok = [r for r in mine if r.sustained]
        best = max((r.offered for r in ok), default=0)
        cap = max(r.achieved for r in mine)
        met = any(r.sustained and r.offered >= TARGET_RATE for r in mine)
        say(f"  {eng:<28} highest rate sustained {best:,.0f}/s; capacity (best achieved) {cap:,.0f}/s; "
             f"target {'MET' if met else 'NOT met'}{'' if eng.startswith(('spark', 'tasks')) else ' (baseline, for reference)'}")
    if spark_rows:
        say(f"  => micro-batch target {'MET' if any(r.sustained and r.offered >= TARGET_RATE for r in spark_rows) else 'NOT met'}")
    if realtime:
        say("\nReal-time mode (Kafka -> Python foreach writer, stateless, no model):")
        for res in realtime:
            for e in res["events"]:
                if e["event"] != "stopping":
                    say(f"  {res['master']}: {e['event']} {e.get('duration', '')} {e.get('error', '')}".rstrip())
            for run in res["runs"]:
                say(f"  {res['master']}: offered {run['offered']:,.0f}/s -> {run['predictions']}/{run['expected']} rows, "
                     f"achieved {run['achieved']:,.0f}/s, p50 {run['p50']:,.0f} ms, p99 {run['p99']:,.0f} ms, "
                     f"max {run['max']:,.0f} ms")
            if res.get("error"):
                say(f"  {res['master']}: {res['error']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": [{**asdict(r), "sustained": r.sustained} for r in rows],
                                               "realtime": realtime}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
