"""Spark batch job: volatility features and labels from the bar lake.

Reads clean bars from ``<lake>/bars`` (hive partitions interval/ticker/date), computes the features of
:mod:`hft.features` with Spark, and writes the feature table partitioned by interval, ticker and date,
overwriting only the dates it computed (safe to re-run). With ``--start`` it also reads the two weeks before
(:data:`hft.features.definitions.CONTEXT_DAYS`): the overnight gap and the time-of-day volume norm read earlier
sessions, so a day computed alone gets the features the whole history would give it::

    spark-submit --master 'local[*]' --driver-java-options -XX:-DontCompileHugeMethods \\
        jobs/volatility_features.py --input var/lake/bars --output var/lake/features --interval 1m \\
        [--start 2024-03-04] [--end 2024-03-08] [--tickers AAA,BBB]

Any ``--master`` works (``local[2]``, ``spark://host:7077``, ``yarn``); without spark-submit it runs on
``local[*]``. ``-XX:-DontCompileHugeMethods`` (also ``spark.executor.extraJavaOptions`` on a cluster) makes
the job about 3x faster: the JIT then compiles Spark's large generated methods (``hft features`` and the
DAG pass it). Input and output may be any Spark URI (``s3a://bucket/lake/bars``). Exit status 2 with a
one-line message on bad arguments or when there are no bars to process.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import date, timedelta

from hft.config import SPARK_LOCAL_CONF
from hft.features import FeatureSpec
from hft.observability.logging import configure_logging

log = logging.getLogger("hft.jobs.volatility_features")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compute volatility features from the bar lake.")
    parser.add_argument("--input", required=True, help="bars root of the lake (…/lake/bars)")
    parser.add_argument("--output", required=True, help="feature table root (…/lake/features)")
    parser.add_argument("--interval", default="1m", choices=["1m", "5m"])
    parser.add_argument("--start", type=date.fromisoformat, help="first session date (YYYY-MM-DD)")
    parser.add_argument("--end", type=date.fromisoformat, help="last session date (YYYY-MM-DD)")
    parser.add_argument("--tickers", type=lambda s: [t.strip().upper() for t in s.split(",") if t.strip()])
    parser.add_argument("--horizon-minutes", type=int, default=FeatureSpec().horizon_minutes)
    args = parser.parse_args(argv)
    if args.start and args.end and args.start > args.end:
        parser.error(f"--start {args.start} is after --end {args.end}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    configure_logging(service="hft-volatility-features")
    from pyspark import SparkConf
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from hft.data.lake import upgrade_format
    from hft.features.definitions import CONTEXT_DAYS
    from hft.features.spark import NoBarsError, compute_features, read_bars, write_features
    from hft.model.dataset import write_label_horizon

    conf = SparkConf()
    builder = SparkSession.builder.appName("hft-volatility-features").config("spark.sql.session.timeZone", "UTC")
    if not conf.contains("spark.master"):  # plain `python jobs/...`: local mode, loopback only
        builder = builder.master("local[*]")
        for key, value in SPARK_LOCAL_CONF.items():
            builder = builder.config(key, value)
    spark = builder.getOrCreate()
    try:
        spec = FeatureSpec.from_env(horizon_minutes=args.horizon_minutes)
        spec.horizon_bars(args.interval)
        upgrade_format(args.input)  # a lake written before float64 volumes: Spark cannot read both side by side
        # the sessions before --start that features of its sessions read (overnight gap, volume norm), not written
        context = args.start - timedelta(days=CONTEXT_DAYS) if args.start else None
        # with --tickers, the market's and sectors' bars too: their features' context (their rows not written)
        read = spec.with_context(args.tickers) if args.tickers else None
        bars = read_bars(spark, args.input, args.interval, context, args.end, read).cache()
        mine = bars.where(F.col("ticker").isin(args.tickers)) if args.tickers else bars
        n_bars = (mine.where(F.col("date") >= F.lit(args.start)) if args.start else mine).count()
        if n_bars == 0:
            raise NoBarsError(f"no {args.interval} bars under {args.input} for the requested dates/tickers")
        wanted = [t for t in spec.index_tickers if read is None or t in read]
        present = {r.ticker for r in bars.where(F.col("ticker").isin(wanted)).select("ticker").distinct().collect()}
        absent = sorted(set(wanted) - present)
        if absent:  # the market (mkt_*) or sector (sec_*) context features that read them are 0
            log.warning("no bars of %s for these dates: the market context features that read them (mkt_*, sec_*) "
                        "are 0; ingest them beside the tickers", ", ".join(absent),
                        extra={"hft": {"context_tickers_absent": absent}})
        features = compute_features(bars, spec)
        if args.start:
            features = features.where(F.col("date") >= F.lit(args.start))
        if args.tickers:
            features = features.where(F.col("ticker").isin(args.tickers))
        features = features.cache()
        n_rows = features.count()
        write_features(features, args.output)
        write_label_horizon(args.output, args.interval, spec.horizon_minutes)  # training checks its embargo
        log.info(
            "wrote %d feature rows from %d bars to %s", n_rows, n_bars, args.output,
            extra={"hft": {"bars_read": n_bars, "feature_rows": n_rows, "output": args.output}},
        )
        return 0
    except (NoBarsError, ValueError) as exc:
        log.error("volatility_features: %s", exc)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
