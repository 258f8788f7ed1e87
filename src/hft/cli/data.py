"""``hft ingest``, ``hft features``, ``hft lake``: bars into the lake, features out of it."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date

from hft.cli._common import EXIT_FAILED, EXIT_OK, arg_date, arg_tickers, out
from hft.config import Settings
from hft.errors import UserError


def source_options(name: str, paths: list[str] | None, extended_hours: bool, seed: int | None) -> dict:
    """Constructor options of source ``name`` from the command's flags."""
    if name == "files":
        if not paths:
            raise UserError("--source files needs --path (a CSV/Parquet file or folder)")
        return {"paths": paths, "regular_session_only": not extended_hours}
    if name == "yfinance":
        return {"regular_session_only": not extended_hours}
    if name == "synthetic" and seed is not None:
        return {"seed": seed}
    return {}


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from hft.data.ingest import fetch_bars, session_range, store
    from hft.data.lake import BarLake
    from hft.data.sources import make_source
    from hft.schemas import Interval

    interval = Interval.parse(args.interval)
    source = make_source(args.source, **source_options(args.source, args.path, args.extended_hours, args.seed))
    start, end = session_range(args.start, args.end)
    lake_root = args.lake or settings.lake_root
    with tqdm(total=2, desc=f"ingest {args.source}", unit="step", disable=not sys.stderr.isatty()) as bar:
        bars = fetch_bars(source, args.tickers, start, end, interval, lake=BarLake(lake_root) if args.incremental else None)
        bar.update()
        result = store(bars, lake_root, settings.max_gap_minutes, args.extended_hours, label=args.source)
        bar.update()
    report_ingest(result, lake_root)
    return EXIT_OK if result.ok else EXIT_FAILED


def report_ingest(result, lake_root: str) -> None:
    """What an ingest did, for a person: counts, and the failed expectations and quarantine if any."""
    out(f"fetched {result.fetched} bars: {result.stored_new} new, {result.stored_updated} updated, "
        f"{result.stored_unchanged} unchanged, {result.quarantined} quarantined -> {lake_root}")
    if not result.ok:
        out(f"validation failed: {result.report.summary()}")
        for where in result.quarantine_locations:
            out(f"quarantined batch and report: {where}")


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    from hft.spark_submit import run_feature_job

    started = time.monotonic()
    output = run_feature_job(args.lake or settings.lake_root, args.master or settings.spark_master, args.interval,
                             args.output, args.start, args.end, args.tickers)
    out(f"features written to {output} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def cmd_lake(args: argparse.Namespace, settings: Settings) -> int:
    from hft.data.lake import BarLake, Quarantine

    lake_root = args.lake or settings.lake_root
    parts = BarLake(lake_root).partitions(args.interval)
    by_ticker: dict[str, list[date]] = {}
    for ticker, day in parts:
        by_ticker.setdefault(ticker, []).append(day)
    out(f"lake {lake_root} ({args.interval}): {len(parts)} partition(s)")
    for ticker, days in sorted(by_ticker.items()):
        out(f"  {ticker:<8} {len(days):>4} session(s) {min(days)} .. {max(days)}")
    batches = Quarantine(lake_root).batches()
    out(f"quarantine: {len(batches)} batch(es)")
    for name in batches:
        out(f"  {name}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("ingest", help="fetch, validate and store bars")
    p.add_argument("--source", choices=["synthetic", "yfinance", "files"], default="synthetic")
    p.add_argument("--path", nargs="+", help="files source: CSV/Parquet files or folders (yfinance layout)")
    p.add_argument("--tickers", type=arg_tickers, required=True, help="comma-separated, e.g. SPY,QQQ")
    p.add_argument("--start", type=arg_date, required=True, help="first session date YYYY-MM-DD")
    p.add_argument("--end", type=arg_date, required=True, help="last session date YYYY-MM-DD (inclusive)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m", "1d"])
    p.add_argument("--incremental", action="store_true", help="fetch only bars newer than the lake holds")
    p.add_argument("--extended-hours", action="store_true", help="keep pre/post-market bars")
    p.add_argument("--seed", type=int, help="synthetic source seed")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("features", help="run the Spark volatility-features job")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--start", type=arg_date)
    p.add_argument("--end", type=arg_date)
    p.add_argument("--tickers", type=arg_tickers)
    p.add_argument("--master", help="Spark master (default HFT_SPARK_MASTER or local[*])")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.add_argument("--output", help="feature table root (default <lake>/features)")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("lake", help="list partitions and quarantined batches")
    p.add_argument("--interval", default="1m", choices=["1m", "5m", "1d"])
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.set_defaults(func=cmd_lake)
