"""Spark's real-time mode, tried: a stateless Kafka -> Python foreach writer query and the latency it gives."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import sys
import time
from dataclasses import asdict

from streamlab.common import ENTRY, HOME, Engine, load_avg, say
from streamlab.data import Phase
from streamlab.engines import Ctx, reset
from streamlab.measure import StreamReader, collect, phase_row
from streamlab.producer import produce


def realtime_worker(args: argparse.Namespace) -> int:
    """A minimal real-time-mode query: Kafka market.bars -> Python foreach writer -> Redis stream of timestamps."""
    from hft.config import SPARK_LOCAL_CONF
    from hft.stack import spark_kafka_jars

    os.environ.update({"SPARK_LOCAL_IP": "127.0.0.1", "PYSPARK_PYTHON": sys.executable})
    from pyspark.sql import SparkSession

    from hft.kafka_conn import spark_options

    builder = (SparkSession.builder.master(args._master).appName("bench-realtime")
               .config("spark.jars", ",".join(spark_kafka_jars())).config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.session.timeZone", "UTC"))
    for key, value in SPARK_LOCAL_CONF.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    redis_url, out_key = args._redis, args._out_key

    class Writer:
        def open(self, partition_id, epoch_id):
            from hft.redis_conn import connect

            self.r = connect(redis_url, decode_responses=False)
            return True

        def process(self, row):
            from hft.streaming.messages import decode_bar

            bar = decode_bar(row.value)
            self.r.xadd(out_key, {"ticker": bar.ticker, "bar_ts": bar.ts_ms, "produced_ns": bar.produced_ns,
                                  "written_ns": time.time_ns()})

        def close(self, error):
            pass

    def report(**kw):
        print("BENCHRT " + json.dumps(kw), flush=True)

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    query = None
    for duration in args._durations.split(","):
        source = (spark.readStream.format("kafka").option("kafka.bootstrap.servers", args._bootstrap)
                  .options(**spark_options())
                  .option("subscribe", "market.bars").option("startingOffsets", "latest").load()
                  .select("key", "value", "partition", "offset"))
        try:
            query = (source.writeStream.foreach(Writer()).outputMode("update")
                     .option("checkpointLocation", str(HOME / "run" / "checkpoints" / f"rt-{time.time_ns()}"))
                     .trigger(realTime=duration).start())
        except Exception as exc:  # noqa: BLE001 - the point is to report it
            report(event="start_failed", duration=duration, error=f"{type(exc).__name__}: {str(exc)[:600]}")
            continue
        report(event="started", duration=duration)
        break
    if query is None:
        spark.stop()
        return 1
    while not stop and query.isActive:
        query.awaitTermination(0.5)
    if query.exception():
        report(event="failed", error=str(query.exception())[:800])
    report(event="stopping", progress=query.lastProgress and {k: query.lastProgress.get(k) for k in
                                                               ("batchId", "numInputRows", "durationMs")})
    try:
        query.stop()
    finally:
        spark.stop()
    return 0


def run_realtime(ctx: Ctx) -> list[dict]:
    from hft.streaming.messages import BARS_TOPIC

    args = ctx.args
    results = []
    # Later bars than the micro-batch phases used are not needed: the query is stateless.
    bars = [m for p in ctx.phases for m in p.msgs]
    for master in dict.fromkeys(["local[2]", f"local[{args.partitions}]"]):
        reset(ctx)
        out_key = f"bench:rt:{time.time_ns()}"
        say(f"\n== realtime {master}: starting ({load_avg()})")
        cmd = [sys.executable, str(ENTRY), "--_worker", "realtime", "--_master", master,
               "--_bootstrap", ctx.config.kafka_bootstrap, "--_redis", ctx.config.redis_url,
               "--_out_key", out_key, "--_durations", args.rt_durations]
        engine = Engine(f"realtime {master}", cmd, HOME / "logs" / f"realtime-{master[6:-1]}.log", ctx.env)
        res = {"master": master, "events": [], "runs": []}
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and engine.alive():
                events = [json.loads(ln[8:]) for ln in engine.log_text().splitlines() if ln.startswith("BENCHRT ")]
                if any(e["event"] == "started" for e in events):
                    break
                time.sleep(0.5)
            res["events"] = events
            for e in events:
                say(f"   {e}")
            if not any(e["event"] == "started" for e in events):
                res["error"] = engine.tail(8) if not engine.alive() else "did not start in 180s"
                say(f"   did not start: {res['error']}")
                results.append(res)
                continue
            time.sleep(args.rt_settle_s)  # the long-running tasks must be scheduled before we measure
            reader = StreamReader(ctx.redis, out_key)
            offset = 0
            for rate in [float(x) for x in args.rt_rates.split(",")]:
                msgs = bars[offset: offset + int(rate * args.rt_seconds)]
                offset += len(msgs)
                expected = {(m.ticker, m.ts_ms) for m in msgs}
                sent = produce(ctx.config.kafka_bootstrap, msgs, rate, BARS_TOPIC)
                got = collect(reader, expected, engine, timeout_s=60, stall_s=args.rt_stall_s)
                row = phase_row(f"realtime {master}", Phase(f"rt {rate:,.0f}/s", rate, msgs, expected), sent, got)
                res["runs"].append(asdict(row))
                say(f"   offered {rate:,.0f}/s sent {sent.rate:,.0f}/s: {row.predictions}/{row.expected} rows written, "
                     f"achieved {row.achieved:,.0f}/s, p50 {row.p50:,.0f} ms p99 {row.p99:,.0f} ms max {row.max:,.0f} ms")
                time.sleep(1.0)
                reader.read()
        finally:
            engine.stop()
            text = engine.log_path.read_text(errors="replace")
            res["events"] = [json.loads(ln[8:]) for ln in text.splitlines() if ln.startswith("BENCHRT ")]
            errors = [ln for ln in text.splitlines()
                      if re.search(r"Exception|Error:", ln) and not ln.startswith("\tat ")]
            res["log_errors"] = sorted(set(errors))[:10]
        results.append(res)
    return results
