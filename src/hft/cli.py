"""The ``hft`` command.

    hft ingest    fetch bars from a source, validate them, store them in the lake (or quarantine)
    hft features  run the Spark volatility-features job on the lake (spark-submit)
    hft lake      show what the lake holds
    hft execute   the C++ executor service: Redis predictions -> orders on the paper exchange; halt/resume
    hft backtest  replay bars and model predictions through the same executor; PnL, risk, equity curve
    hft demo      synthetic ingest -> validation -> Spark features, then a summary

User mistakes end with a one-line ``error: ...`` on stderr and exit status 2; a batch that fails validation
ends with exit status 1 after saying which expectations failed on how many rows. Logs are ECS JSON on
stderr (``--log-level`` or ``HFT_LOG_LEVEL``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV, Settings, join_uri
from hft.stack.config import repo_root

log = logging.getLogger("hft.cli")

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEMO_START, DEMO_END = date(2024, 1, 2), date(2024, 3, 28)
DEMO_HELD_BACK = (date(2024, 4, 1), date(2024, 4, 2))  # never trained on; replayed through Kafka


class UserError(Exception):
    """A mistake in what the user asked; reported in one line, no traceback."""


# -- helpers -------------------------------------------------------------------------------------------------
def arg_date(value: str) -> date:
    """argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def arg_tickers(value: str) -> list[str]:
    """argparse type: comma-separated tickers, upper-cased."""
    out = [t.strip().upper() for t in value.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError("no tickers given")
    return out


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def spark_submit_command(script: str, job_args: list[str], master: str, jars: list[str] | None = None) -> list[str]:
    """``spark-submit`` of a repository script (``jobs/x.py``, ``streaming/y.py``) with the project's Python
    on driver and executors, bound to loopback."""
    binary = Path(sys.executable).with_name("spark-submit")
    submit = str(binary) if binary.exists() else shutil.which("spark-submit")
    if not submit:
        raise UserError("spark-submit not found: run `make setup` (it installs pyspark into .venv)")
    path = repo_root() / script
    if not path.exists():
        raise UserError(f"script not found: {path} (set HFT_REPO_ROOT to the checkout)")
    return [
        submit, "--master", master,
        *(["--jars", ",".join(jars)] if jars else []),
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", "spark.sql.session.timeZone=UTC",
        "--conf", "spark.ui.showConsoleProgress=false",
        *(arg for key, value in SPARK_LOCAL_CONF.items() for arg in ("--conf", f"{key}={value}")),
        str(path), *job_args,
    ]


def run_spark_job(script: str, job_args: list[str], master: str) -> None:
    cmd = spark_submit_command(script, job_args, master)
    env = {**os.environ, **SPARK_LOCAL_ENV, "PYSPARK_PYTHON": sys.executable}
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        # spark-submit sends the Python driver's output to stdout; the job's last word is "error: ...".
        lines = (proc.stdout + "\n" + proc.stderr).splitlines()
        tail = [line for line in lines if line.startswith("error:")]
        detail = tail[-1][len("error: "):] if tail else "\n".join(proc.stderr.splitlines()[-15:])
        raise UserError(f"spark job {script} failed (exit {proc.returncode}): {detail}")


# -- commands ------------------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from hft.data.ingest import fetch_bars, session_range, store
    from hft.data.lake import BarLake
    from hft.data.sources import make_source
    from hft.schemas import Interval

    interval = Interval.parse(args.interval)
    options: dict = {}
    if args.source == "files":
        if not args.path:
            raise UserError("--source files needs --path (a CSV/Parquet file or folder)")
        options = {"paths": args.path, "regular_session_only": not args.extended_hours}
    elif args.source == "yfinance":
        options = {"regular_session_only": not args.extended_hours}
    elif args.source == "synthetic" and args.seed is not None:
        options = {"seed": args.seed}
    source = make_source(args.source, **options)
    start, end = session_range(args.start, args.end)
    lake_root = args.lake or settings.lake_root
    with tqdm(total=2, desc=f"ingest {args.source}", unit="step", disable=not sys.stderr.isatty()) as bar:
        bars = fetch_bars(source, args.tickers, start, end, interval, lake=BarLake(lake_root) if args.incremental else None)
        bar.update()
        result = store(bars, lake_root, settings.max_gap_minutes, args.extended_hours, label=args.source)
        bar.update()
    _out(
        f"fetched {result.fetched} bars: {result.stored_new} new, {result.stored_updated} updated, "
        f"{result.stored_unchanged} unchanged, {result.quarantined} quarantined -> {lake_root}"
    )
    if not result.ok:
        _out(f"validation failed: {result.report.summary()}")
        for where in result.quarantine_locations:
            _out(f"quarantined batch and report: {where}")
        return EXIT_FAILED
    return EXIT_OK


def cmd_features(args: argparse.Namespace, settings: Settings) -> int:
    lake_root = args.lake or settings.lake_root
    job_args = ["--input", join_uri(lake_root, "bars"), "--output", args.output or join_uri(lake_root, "features"),
                "--interval", args.interval]
    if args.start:
        job_args += ["--start", args.start.isoformat()]
    if args.end:
        job_args += ["--end", args.end.isoformat()]
    if args.tickers:
        job_args += ["--tickers", ",".join(args.tickers)]
    started = time.monotonic()
    run_spark_job("jobs/volatility_features.py", job_args, args.master or settings.spark_master)
    _out(f"features written to {job_args[3]} in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def cmd_lake(args: argparse.Namespace, settings: Settings) -> int:
    from hft.data.lake import BarLake, Quarantine

    lake_root = args.lake or settings.lake_root
    lake = BarLake(lake_root)
    parts = lake.partitions(args.interval)
    by_ticker: dict[str, list[date]] = {}
    for ticker, day in parts:
        by_ticker.setdefault(ticker, []).append(day)
    _out(f"lake {lake_root} ({args.interval}): {len(parts)} partition(s)")
    for ticker, days in sorted(by_ticker.items()):
        _out(f"  {ticker:<8} {len(days):>4} session(s) {min(days)} .. {max(days)}")
    batches = Quarantine(lake_root).batches()
    _out(f"quarantine: {len(batches)} batch(es)")
    for name in batches:
        _out(f"  {name}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    """Synthetic market -> validation -> lake -> Spark features -> summary."""
    import pandas as pd

    from hft.features import FeatureSpec

    lake_root = args.lake or settings.lake_root
    tickers = list(settings.tickers)
    t0 = time.monotonic()
    _out(f"[1/6] ingest: synthetic {','.join(tickers)} 1m bars, {DEMO_START} .. {DEMO_END} -> {lake_root}")
    ingest_args = argparse.Namespace(
        source="synthetic", path=None, tickers=tickers, start=DEMO_START, end=DEMO_END, interval="1m",
        incremental=False, extended_hours=False, lake=lake_root, seed=None,
    )
    if cmd_ingest(ingest_args, settings) != EXIT_OK:
        return EXIT_FAILED
    _out("[2/6] features: spark-submit jobs/volatility_features.py")
    feat_args = argparse.Namespace(lake=lake_root, output=None, interval="1m", start=None, end=None,
                                   tickers=None, master=args.master)
    cmd_features(feat_args, settings)
    _out("[3/6] feature summary")
    features = pd.read_parquet(join_uri(lake_root, "features", "interval=1m"))
    spec = FeatureSpec()
    complete = features.dropna(subset=spec.feature_names())
    summary = features.groupby("ticker", observed=True).agg(
        rows=("label", "size"), sessions=("date", "nunique"), up_share=("label", "mean"),
        rv_30_median=("rv_30", "median"), yang_zhang_30_median=("yang_zhang_30", "median"),
    )
    _out(summary.to_string(float_format=lambda v: f"{v:.5f}"))
    _out(
        f"feature table: {len(features)} rows x {len(spec.feature_names())} features, "
        f"{len(complete)} rows with every feature; label up-share {features['label'].mean():.3f}"
    )
    _out("[4/6] model: train (walk-forward) -> MLflow run -> register challenger -> gate -> champion")
    train_args = argparse.Namespace(
        features=None, lake=lake_root, interval="1m", tickers=None, set=[], tracking_uri=None, margin=None,
        no_promote=False,
    )
    cmd_train(train_args, settings)
    cmd_model(argparse.Namespace(action="list", tracking_uri=None), settings)
    _out(f"[5/6] streaming: held-back sessions {DEMO_HELD_BACK[0]}..{DEMO_HELD_BACK[1]} -> Kafka -> Spark -> Redis")
    demo_stream(lake_root, tickers, settings)
    _out(f"demo finished in {time.monotonic() - t0:.1f}s")
    return EXIT_OK


def demo_stream(lake_root: str, tickers: list[str], settings: Settings) -> None:
    """Stack up, replay the held-back sessions through Kafka into the streaming job, report, stack down."""
    import numpy as np

    from hft import stack
    from hft.streaming.store import RedisStore

    held = argparse.Namespace(
        source="synthetic", path=None, tickers=tickers, start=DEMO_HELD_BACK[0], end=DEMO_HELD_BACK[1],
        interval="1m", incremental=False, extended_hours=False, lake=lake_root, seed=None,
    )
    if cmd_ingest(held, settings) != EXIT_OK:
        raise UserError("held-back sessions failed validation")
    import dataclasses

    # The demo streams into its own run folder, wiped each time, so a re-run shows the same predictions.
    config = _stack_config()
    config = dataclasses.replace(config, run_dir=config.run_dir.parent / "demo-run")
    services = ("kafka", "redis")
    stack.down(config, services)
    shutil.rmtree(config.run_dir, ignore_errors=True)
    started = stack.up(config, services)
    try:
        for name, how in started.items():
            _out(f"  {name}: {how}")
        stack.ensure_topics(config.kafka_bootstrap, stream_topics())
        store = RedisStore.from_url(config.redis_url)
        before = store.r.xlen(store.stream_key)
        stream = argparse.Namespace(master="local[2]", tickers=tickers, trigger="250 milliseconds",
                                    checkpoint=str(config.run_dir / "checkpoints" / "predict_stream"),
                                    metrics_port=0, stop_when_idle=10.0, max_offsets=20000)
        job = _stream_process(stream, config)
        deadline = time.monotonic() + 180
        while not store.running():
            if job.poll() is not None or time.monotonic() > deadline:
                raise UserError("the streaming job did not start (see its log above)")
            time.sleep(0.5)
        _out("  streaming job running; replaying at 3000x (50 minutes of market per second)")
        collect = argparse.Namespace(source="replay", tickers=tickers, start=DEMO_HELD_BACK[0], end=DEMO_HELD_BACK[1],
                                     interval="1m", speed=3000.0, limit=None, poll_s=60.0, bootstrap=None, lake=lake_root)
        cmd_collect(collect, settings)
        if job.wait() != 0:
            raise UserError("the streaming job failed (see its log above)")
        entries = store.stream()[before:]
        lat = np.array([(int(e["written_ns"]) - int(e["produced_ns"])) / 1e6 for e in entries if e.get("produced_ns")])
        if len(lat):
            p50, p99, p999 = np.percentile(lat, [50, 99, 99.9])
            _out(f"  {len(entries)} predictions in Redis; latency bar produced -> prediction in Redis: "
                 f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, p99.9 {p999:.0f} ms")
        for ticker in tickers:
            latest = store.latest(ticker)
            if latest:
                bar = datetime.fromtimestamp(int(latest["bar_ts"]) / 1000, timezone.utc)
                _out(f"  {ticker}: P(up in 5 min) = {float(latest['probability']):.3f} for the bar of "
                     f"{bar:%Y-%m-%d %H:%M} UTC (model v{latest['model_version']})")
        demo_execute(config, tickers, settings)
    finally:
        stack.down(config, services)
        _out("  stack stopped")


def demo_execute(config, tickers: list[str], settings: Settings) -> None:
    """The executor trades the streamed predictions on the paper exchange; prints PnL and risk."""
    import redis

    from hft.execution.config import ExecConfig
    from hft.execution.service import ORDERS_TOPIC, ExecutionService
    from hft.stack import TopicSpec, ensure_topics
    from hft.streaming.kafka_io import TopicSink

    _out("[6/6] execution: Redis predictions -> C++ executor (risk checks) -> paper exchange -> Kafka `orders`")
    ensure_topics(config.kafka_bootstrap, {ORDERS_TOPIC: TopicSpec(partitions=1, retention_ms=7 * 86_400_000)})
    journal = config.run_dir / "executor"
    shutil.rmtree(journal, ignore_errors=True)
    r = redis.Redis.from_url(config.redis_url, decode_responses=True)
    service = ExecutionService(r, journal, tickers, ExecConfig.from_env(), replay_clock=True,
                               kafka=TopicSink(config.kafka_bootstrap, ORDERS_TOPIC, client_id="hft-demo-executor"))
    try:
        totals = service.run(stop_when_idle_s=1.0)
    finally:
        service.close()
    _out(f"  {totals.get('entries', 0)} predictions decided: {totals.get('orders', 0)} orders, "
         f"{totals.get('fills', 0)} fills; journal {journal}")
    for line in service.summary():
        _out("  " + line)


def _model_config(args: argparse.Namespace):
    from hft.model.config import ModelConfig

    overrides = {}
    for item in args.set or []:
        if "=" not in item:
            raise UserError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        overrides[name.strip()] = value.strip()
    try:
        return ModelConfig.from_env().with_overrides(**overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from hft.model.pipeline import train_and_register

    config = _model_config(args)
    features = args.features or join_uri(args.lake or settings.lake_root, "features")
    outcome = train_and_register(
        features, config, interval=args.interval, tracking_uri=args.tracking_uri,
        promote_if_better=not args.no_promote, margin=args.margin, tickers=args.tickers,
    )
    _out(outcome.evaluation_table)
    _out(f"registered hft-direction version {outcome.version} (run {outcome.run_id}) as challenger")
    _out(f"gate: {outcome.gate_reason} -> {'promoted to champion' if outcome.promoted else 'champion unchanged'}")
    return EXIT_OK


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from hft.model import registry

    if args.action == "list":
        rows = registry.list_versions(args.tracking_uri)
        if not rows:
            _out("no registered versions of hft-direction")
        for r in rows:
            aliases = ",".join(r["aliases"]) or "-"
            _out(f"v{r['version']:<4} {aliases:<22} holdout_auc={r['holdout_auc']} "
                 f"beats_all_baselines={r['beats_all_baselines']} run={r['run_id']} {r['created']}")
    elif args.action == "promote":
        if not args.version:
            raise UserError("model promote needs --version N")
        if not args.force:
            margin = Settings.from_env().promotion_margin if args.margin is None else args.margin
            decision = registry.gate(args.version, margin, args.tracking_uri)
            if not decision.promote:
                _out(f"gate refused version {args.version}: {decision.reason} (use --force to override)")
                return EXIT_FAILED
            reason = decision.reason
        else:
            reason = "forced by operator"
        changed = registry.promote(args.version, reason=reason, tracking_uri=args.tracking_uri)
        _out(f"champion is version {args.version}" + ("" if changed else " (unchanged)"))
    elif args.action == "rollback":
        _out(f"champion rolled back to version {registry.rollback(args.tracking_uri)}")
    return EXIT_OK


def _stack_config():
    from hft.stack import StackConfig

    return StackConfig.from_env()


def stream_topics() -> dict:
    """``market.bars``, its DLQ and ``predictions``: partitions and retention from the environment."""
    from hft.stack import TopicSpec
    from hft.streaming.messages import BARS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC

    partitions = int(os.environ.get("HFT_BARS_PARTITIONS", "2"))
    retention = int(os.environ.get("HFT_TOPIC_RETENTION_MS", str(7 * 86_400_000)))
    return {
        BARS_TOPIC: TopicSpec(partitions=partitions, retention_ms=retention),
        DLQ_TOPIC: TopicSpec(partitions=1, retention_ms=4 * retention),
        PREDICTIONS_TOPIC: TopicSpec(partitions=partitions, retention_ms=retention),
    }


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    from hft import stack

    config = _stack_config()
    services = tuple(args.services.split(",")) if args.services else ("kafka", "redis", "mlflow")
    if args.action == "up":
        stack.up(config, services)
        if "kafka" in services:
            stack.ensure_topics(config.kafka_bootstrap, stream_topics())
    elif args.action == "down":
        stack.down(config, services)
    elif args.action == "jars":
        _out(",".join(stack.spark_kafka_jars()))
        return EXIT_OK
    healthy = True
    for name, st in stack.status(config).items():
        if name not in services:
            continue
        healthy &= st.healthy or args.action != "up"  # `up` must end healthy; status/down only report
        _out(f"{name:<7} {'running' if st.running else 'stopped':<8} {'healthy' if st.healthy else '-':<8} "
             f"pid={st.pid or '-'} {st.address} {st.detail or ''}".rstrip())
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from hft.observability.metrics import serve
    from hft.streaming import collectors

    config = _stack_config()
    bootstrap = args.bootstrap or config.kafka_bootstrap
    serve(args.metrics_port)
    if args.source == "yfinance":
        from hft.data.sources.yfinance import YFinanceSource

        poller = collectors.YFinancePoller(args.tickers, args.interval, poll_s=args.poll_s,
                                           source=YFinanceSource(regular_session_only=not args.extended_hours),
                                           state_path=settings.home / "collectors" / f"yfinance-{args.interval}.json")
        result = collectors.run_poller(poller, bootstrap, polls=args.polls)
        _out(f"yfinance: {result.sent} bars sent, {result.failed} failed in {result.seconds:.1f}s")
        return EXIT_OK if result.failed == 0 else EXIT_FAILED
    if not (args.start and args.end):
        raise UserError(f"collect {args.source} needs --start and --end")
    if args.start > args.end:
        raise UserError(f"--start {args.start} is after --end {args.end}")
    if args.source == "replay":
        messages = collectors.replay(args.lake or settings.lake_root, args.tickers, args.start, args.end, args.interval)
    else:
        messages = collectors.synthetic(args.tickers, args.start, args.end, args.interval)
    result = collectors.publish(collectors.paced(messages, args.speed), bootstrap, source=args.source, limit=args.limit)
    _out(f"{args.source}: {result.sent} bars sent, {result.failed} failed in {result.seconds:.1f}s")
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


def stream_command(args: argparse.Namespace, config) -> list[str]:
    from hft import stack

    job_args = ["--bootstrap", config.kafka_bootstrap, "--redis", config.redis_url,
                "--checkpoint", str(args.checkpoint or config.run_dir / "checkpoints" / "predict_stream"),
                "--trigger", args.trigger, "--metrics-port", str(args.metrics_port),
                "--stop-when-idle", str(args.stop_when_idle), "--max-offsets", str(args.max_offsets)]
    if args.tickers:
        job_args += ["--tickers", ",".join(args.tickers)]
    return spark_submit_command("streaming/predict_stream.py", job_args, args.master, jars=stack.spark_kafka_jars())


def _stream_process(args: argparse.Namespace, config) -> subprocess.Popen:
    """Start the streaming job; its output (Spark's and the driver's ECS logs) goes to our stderr."""
    cmd = stream_command(args, config)
    env = {**os.environ, **SPARK_LOCAL_ENV, "PYSPARK_PYTHON": sys.executable, "OPENBLAS_NUM_THREADS": "1"}
    log.info("running %s", " ".join(cmd))
    return subprocess.Popen(cmd, env=env, stdout=sys.stderr, stderr=sys.stderr)


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    return _stream_process(args, _stack_config()).wait()


def cmd_execute(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from hft.execution.config import ExecConfig
    from hft.execution.service import ORDERS_TOPIC, ExecutionService, set_halt

    config = _stack_config()
    url = args.redis or config.redis_url
    r = redis.Redis.from_url(url, decode_responses=True)
    try:
        r.ping()
    except redis.RedisError as exc:
        raise UserError(f"cannot reach Redis at {url}: {exc} (start it with `hft stack up`)") from None
    if args.action in ("halt", "resume"):
        set_halt(r, halt=args.action == "halt")
        _out("kill switch engaged: the executor halts before its next decision" if args.action == "halt"
             else "kill switch released: the executor resumes at its next batch")
        return EXIT_OK
    if args.action == "status":
        state, positions = r.hgetall("hft:exec:state"), r.hgetall("hft:positions")
        if not state:
            _out("no executor state in Redis yet")
            return EXIT_OK
        _out(" ".join(f"{k}={v}" for k, v in sorted(state.items())))
        _out(" ".join(f"{t}={q}" for t, q in sorted(positions.items())) or "no positions")
        return EXIT_OK
    try:
        exec_config = ExecConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    kafka = None
    if not args.no_kafka:
        from hft import stack
        from hft.stack import TopicSpec
        from hft.streaming.kafka_io import TopicSink

        stack.ensure_topics(config.kafka_bootstrap, {ORDERS_TOPIC: TopicSpec(partitions=1, retention_ms=7 * 86_400_000)})
        kafka = TopicSink(config.kafka_bootstrap, ORDERS_TOPIC, client_id="hft-executor")
    from hft.observability.metrics import serve

    serve(args.metrics_port)
    service = ExecutionService(r, args.journal or settings.home / "executor", args.tickers or list(settings.tickers),
                               exec_config, kafka=kafka, batch=args.batch, replay_clock=args.replay_clock)
    try:
        totals = service.run(stop_when_idle_s=args.stop_when_idle or None)
    finally:
        service.close()
    _out(f"executor: {totals.get('entries', 0)} predictions read, {totals.get('orders', 0)} orders, "
         f"{totals.get('fills', 0)} fills")
    for line in service.summary():
        _out(line)
    return EXIT_OK


# -- parser --------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default HFT_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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

    p = sub.add_parser("train", help="train, evaluate, register (challenger) and gate the direction model")
    p.add_argument("--features", help="feature table root (default <lake>/features)")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--tickers", type=arg_tickers)
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="model setting, e.g. epochs=10 (repeatable)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or sqlite under HFT_HOME)")
    p.add_argument("--margin", type=float, default=None,
                   help="AUC margin the challenger's paired bootstrap interval against the champion must lie above "
                        "(default HFT_PROMOTION_MARGIN, 0.001)")
    p.add_argument("--no-promote", action="store_true", help="register as challenger only, skip the gate")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("model", help="list, promote or roll back registered models")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("--version", help="model version (promote)")
    p.add_argument("--force", action="store_true", help="promote without the gate")
    p.add_argument("--margin", type=float, default=None, help="as for train (default HFT_PROMOTION_MARGIN)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("stack", help="start, stop or check the local Kafka, Redis and MLflow")
    p.add_argument("action", choices=["up", "down", "status", "jars"])
    p.add_argument("--services", help="comma-separated subset of kafka,redis,mlflow")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("collect", help="publish bars to Kafka market.bars")
    p.add_argument("source", choices=["replay", "synthetic", "yfinance"])
    p.add_argument("--tickers", type=arg_tickers, required=True)
    p.add_argument("--start", type=arg_date, help="first session date (replay, synthetic)")
    p.add_argument("--end", type=arg_date, help="last session date (replay, synthetic)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--speed", type=float, default=0.0, help="time multiplier (60: a minute of bars per second); 0: as fast as possible")
    p.add_argument("--limit", type=int, help="stop after this many bars")
    p.add_argument("--poll-s", type=float, default=60.0, help="yfinance polling period")
    p.add_argument("--polls", type=int, help="yfinance: stop after this many polls (default: run until stopped)")
    p.add_argument("--extended-hours", action="store_true", help="yfinance: send pre/post-market bars too")
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics port on 127.0.0.1 (0: off)")
    p.add_argument("--bootstrap", help="Kafka bootstrap (default: the local stack)")
    p.add_argument("--lake", help="lake root for replay (default HFT_LAKE_ROOT)")
    p.set_defaults(func=cmd_collect)

    p = sub.add_parser("stream", help="run the Spark streaming inference job (spark-submit)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--tickers", type=arg_tickers,
                   help="universe; other tickers go to the DLQ as unknown_ticker (default: every valid ticker symbol)")
    p.add_argument("--trigger", default="100 milliseconds")
    p.add_argument("--max-offsets", type=int, default=20000, help="most Kafka messages per micro-batch")
    p.add_argument("--checkpoint", help="checkpoint folder (default <run dir>/checkpoints/predict_stream)")
    p.add_argument("--metrics-port", type=int, default=9108)
    p.add_argument("--stop-when-idle", type=float, default=0.0, help="stop after N seconds without input (0: run until killed)")
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser("execute", help="run the executor service, or halt/resume it (kill switch)")
    p.add_argument("action", nargs="?", default="run", choices=["run", "halt", "resume", "status"])
    p.add_argument("--tickers", type=arg_tickers, help="universe (default HFT_TICKERS); others are refused")
    p.add_argument("--journal", help="journal folder (default <HFT_HOME>/executor)")
    p.add_argument("--redis", help="Redis URL (default: the local stack)")
    p.add_argument("--batch", type=int, default=1000, help="stream entries per decision batch")
    p.add_argument("--no-kafka", action="store_true", help="publish to Redis only, not to Kafka `orders`")
    p.add_argument("--replay-clock", action="store_true",
                   help="historical bars replayed now: a prediction arrives at its bar's end (stale guard)")
    p.add_argument("--metrics-port", type=int, default=9109)
    p.add_argument("--stop-when-idle", type=float, default=0.0, help="stop after N seconds without predictions (0: run until killed)")
    p.set_defaults(func=cmd_execute)

    from hft.backtest.cli import add_parser as add_backtest_parser

    add_backtest_parser(sub)

    p = sub.add_parser("demo", help="synthetic ingest -> validation -> Spark features -> summary")
    p.add_argument("--master", default="local[*]")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.set_defaults(func=cmd_demo)
    return parser


def _model_errors() -> tuple[type[Exception], ...]:
    """Model-side user errors, imported only when the model package was used (TensorFlow is heavy)."""
    if "hft.model" not in sys.modules:
        return ()
    from hft.model.dataset import DatasetError
    from hft.model.network import WeightsFileError
    from hft.model.registry import RegistryError

    errors: list[type[Exception]] = [DatasetError, WeightsFileError, RegistryError]
    try:
        from mlflow.exceptions import MlflowException

        errors.append(MlflowException)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    from hft.data.sources.base import SourceError
    from hft.observability.logging import configure_logging
    from hft.schemas import SchemaError
    from hft.stack import StackError
    from hft.streaming.champion import NoChampionError
    from hft.streaming.kafka_io import DeliveryError

    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(args.log_level or settings.log_level, service=f"hft-{args.command}")
    try:
        return args.func(args, settings)
    except (UserError, SourceError, SchemaError, StackError, NoChampionError, DeliveryError, FileNotFoundError,
            PermissionError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except _model_errors() as exc:
        sys.stderr.write(f"error: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
