"""``hft demo`` (``make demo``): synthetic market -> validation -> lake -> Spark features -> model (MLflow,
gate) -> Kafka -> Spark streaming -> Redis -> C++ executor, end to end.

Every step calls the library function the individual command calls (never another command); results go
to stdout step by step, the streaming job's Spark log to a file under the demo's run folder.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timezone

from hft.cli._common import EXIT_OK, arg_date, out
from hft.config import Settings, join_uri
from hft.errors import UserError


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs on. Defaults: 4 tickers (``HFT_TICKERS``), about three months of 1-minute bars
    to train on, and two later sessions never trained on, replayed through Kafka."""

    tickers: tuple[str, ...]
    start: date = date(2024, 1, 2)
    end: date = date(2024, 3, 28)
    held_back: tuple[date, date] = (date(2024, 4, 1), date(2024, 4, 2))
    master: str = "local[*]"
    replay_speed: float = 3000.0  # 50 minutes of market per second

    def __post_init__(self) -> None:
        if self.start > self.end or self.held_back[0] > self.held_back[1]:
            raise UserError("demo: a date range ends before it starts")
        if self.held_back[0] <= self.end:
            raise UserError(f"demo: the held-back sessions ({self.held_back[0]}..) must come after training ({self.end})")


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    defaults = DemoPlan(tickers=settings.tickers)
    held = args.held_back or list(defaults.held_back)
    plan = DemoPlan(tickers=settings.tickers, start=args.start or defaults.start, end=args.end or defaults.end,
                    held_back=(held[0], held[-1]), master=args.master)
    run_demo(plan, settings, args.lake or settings.lake_root, out)
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("demo", help="the whole pipeline end to end on the synthetic market")
    p.add_argument("--master", default="local[*]", help="Spark master of the feature job")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.add_argument("--start", type=arg_date, help=f"first training session (default {DemoPlan.start})")
    p.add_argument("--end", type=arg_date, help=f"last training session (default {DemoPlan.end})")
    p.add_argument("--held-back", type=arg_date, nargs="+", metavar="DATE",
                   help="first (and last) session streamed through Kafka, after --end "
                        f"(default {DemoPlan.held_back[0]} {DemoPlan.held_back[1]})")
    p.set_defaults(func=cmd_demo)


def run_demo(plan: DemoPlan, settings: Settings, lake_root: str, out: Callable[[str], None]) -> None:
    from hft.cli.data import report_ingest
    from hft.cli.model import list_models, report_training
    from hft.model.pipeline import train_and_register
    from hft.spark_submit import run_feature_job

    t0 = time.monotonic()
    tickers = ",".join(plan.tickers)
    out(f"[1/6] ingest: synthetic {tickers} 1m bars, {plan.start} .. {plan.end} -> {lake_root}")
    result = _ingest(plan, plan.start, plan.end, settings, lake_root)
    report_ingest(result, lake_root)
    if not result.ok:
        raise UserError("demo: the synthetic bars failed validation (see above)")
    out("[2/6] features: spark-submit jobs/volatility_features.py (its log: kept by spark-submit, shown on failure)")
    started = time.monotonic()
    features_root = run_feature_job(lake_root, plan.master)
    out(f"  features written to {features_root} in {time.monotonic() - started:.1f}s")
    out("[3/6] feature summary")
    _feature_summary(features_root, out)
    out("[4/6] model: train (walk-forward) -> MLflow run -> register challenger -> gate -> champion")
    outcome = train_and_register(features_root, _model_config(), interval="1m")
    report_training(outcome)
    _ensure_champion(outcome, out)
    list_models()
    out(f"[5/6] streaming: held-back sessions {plan.held_back[0]}..{plan.held_back[1]} -> Kafka -> Spark -> Redis")
    held = _ingest(plan, *plan.held_back, settings, lake_root)
    if not held.ok:
        raise UserError("demo: the held-back sessions failed validation")
    _stream_and_execute(plan, lake_root, out)
    out(f"demo finished in {time.monotonic() - t0:.1f}s")


def _ensure_champion(outcome, out: Callable[[str], None]) -> None:
    """The stream serves only the registry's champion. When the gate refused the first model, the demo
    still shows the rest of the pipeline: it promotes that version past the gate, says so, and records it
    in the champion history (what `hft model promote --force` does); a deployment would stop here."""
    from hft.model import registry

    if registry.alias_version(registry.client(), registry.CHAMPION) is not None:
        return
    out(f"  the gate refused v{outcome.version}; DEMO ONLY: promoting it past the gate to show the stream "
        "(recorded as forced in the champion history; a deployment would stop here)")
    registry.promote(outcome.version, reason=f"demo: forced past the gate ({outcome.gate_reason})",
                     by="hft demo (forced past the gate)")


def _ingest(plan: DemoPlan, start: date, end: date, settings: Settings, lake_root: str):
    from hft.data.ingest import ingest, session_range
    from hft.data.sources import make_source

    lo, hi = session_range(start, end)
    return ingest(make_source("synthetic"), list(plan.tickers), lo, hi, "1m", lake_root, settings.max_gap_minutes)


def _model_config():
    from hft.model.config import ModelConfig

    return ModelConfig.from_env()


def _feature_summary(features_root: str, out: Callable[[str], None]) -> None:
    import pandas as pd

    from hft.features import FeatureSpec

    features = pd.read_parquet(join_uri(features_root, "interval=1m"))
    spec = FeatureSpec.from_env()
    complete = features.dropna(subset=spec.feature_names())
    summary = features.groupby("ticker", observed=True).agg(
        rows=("label", "size"), sessions=("date", "nunique"), up_share=("label", "mean"),
        rv_30_median=("rv_30", "median"), yang_zhang_30_median=("yang_zhang_30", "median"),
    ).reset_index()
    out(summary.to_string(index=False, float_format=lambda v: f"{v:.5f}"))
    out(f"feature table: {len(features)} rows x {len(spec.feature_names())} features, "
        f"{len(complete)} rows with every feature; label up-share {features['label'].mean():.3f}")


def _stream_and_execute(plan: DemoPlan, lake_root: str, out: Callable[[str], None]) -> None:
    """Stack up (its own run folder, wiped each time, so a re-run shows the same predictions), the
    streaming job on the held-back sessions, then the executor on its predictions; stack down."""
    import numpy as np

    from hft import stack
    from hft.spark_submit import start_stream_job, stream_job_command
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    config = stack.StackConfig.from_env()
    config = dataclasses.replace(config, run_dir=config.run_dir.parent / "demo-run")
    services = ("kafka", "redis")
    stack.down(config, services)
    shutil.rmtree(config.run_dir, ignore_errors=True)
    started = stack.up(config, services)
    try:
        for name, how in started.items():
            out(f"  {name}: {how}")
        stack.ensure_topics(config.kafka_bootstrap, stack.stream_topics())
        store = RedisStore.from_url(config.redis_url)
        before = store.r.xlen(store.stream_key)
        log_path = config.run_dir / "logs" / "predict_stream.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "w") as log_file:
            job = start_stream_job(stream_job_command(config, "local[2]", list(plan.tickers), "250 milliseconds",
                                                      stop_when_idle=10.0), output=log_file)
            out(f"  streaming job starting (Spark's log: {log_path})")
            deadline = time.monotonic() + 180
            while not store.running():
                if job.poll() is not None or time.monotonic() > deadline:
                    raise UserError(f"the streaming job did not start (see {log_path})")
                time.sleep(0.5)
            out(f"  streaming job running; replaying at {plan.replay_speed:g}x")
            messages = collectors.replay(lake_root, list(plan.tickers), *plan.held_back, "1m")
            sent = collectors.publish(collectors.paced(messages, plan.replay_speed), config.kafka_bootstrap, source="replay")
            out(f"  replay: {sent.sent} bars sent, {sent.failed} failed in {sent.seconds:.1f}s")
            if job.wait() != 0:
                raise UserError(f"the streaming job failed (see {log_path})")
        entries = store.stream()[before:]
        lat = np.array([(int(e["written_ns"]) - int(e["produced_ns"])) / 1e6 for e in entries if e.get("produced_ns")])
        if len(lat):
            p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
            out(f"  {len(entries)} predictions in Redis; latency bar produced -> prediction in Redis: "
                f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, p99.9 {p999:.0f} ms")
        for ticker in plan.tickers:
            latest = store.latest(ticker)
            if latest:
                bar = datetime.fromtimestamp(int(latest["bar_ts"]) / 1000, timezone.utc)
                out(f"  {ticker}: P(up in 5 min) = {float(latest['probability']):.3f} for the bar of "
                    f"{bar:%Y-%m-%d %H:%M} UTC (model v{latest['model_version']})")
        _execute(config, list(plan.tickers), out)
    finally:
        stack.down(config, services)
        out("  stack stopped")


def _execute(config, tickers: list[str], out: Callable[[str], None]) -> None:
    """The executor trades the streamed predictions on the paper exchange; prints PnL and risk, and how
    many of its records Kafka `orders` holds."""
    from hft.cli.execution import orders_sink
    from hft.execution.config import ExecConfig
    from hft.execution.service import ORDERS_TOPIC, ExecutionService
    from hft.redis_conn import connect
    from hft.streaming.kafka_io import topic_size

    out("[6/6] execution: Redis predictions -> C++ executor (risk checks) -> paper exchange -> Kafka `orders`")
    journal = config.run_dir / "executor"
    shutil.rmtree(journal, ignore_errors=True)
    r = connect(config.redis_url)
    service = ExecutionService(r, journal, tickers, ExecConfig.from_env(), replay_clock=True,
                               kafka=orders_sink(config, "hft-demo-executor"))
    try:
        totals = service.run(stop_when_idle_s=1.0)
    finally:
        service.close()
    out(f"  {totals.get('entries', 0)} predictions decided: {totals.get('orders', 0)} orders, "
        f"{totals.get('fills', 0)} fills; journal {journal}")
    out(f"  Kafka `{ORDERS_TOPIC}` holds {topic_size(config.kafka_bootstrap, ORDERS_TOPIC)} records "
        "(orders sent, fills, orders done)")
    for line in service.summary():
        out("  " + line)
