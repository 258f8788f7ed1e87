"""``hft collect``, ``hft stream``: bars into Kafka, and the Spark streaming job that predicts them."""

from __future__ import annotations

import argparse

from hft.cli._common import EXIT_FAILED, EXIT_OK, arg_date, arg_tickers, out, stack_config
from hft.config import Settings
from hft.errors import UserError


def cmd_collect(args: argparse.Namespace, settings: Settings) -> int:
    from hft.features.definitions import FeatureSpec
    from hft.observability.metrics import serve
    from hft.streaming import collectors

    bootstrap = args.bootstrap or stack_config().kafka_bootstrap
    # the index's and sector ETFs' bars too: the market context features of the tickers read them in the stream
    tickers = FeatureSpec.from_env().with_context(args.tickers)
    if len(tickers) > len(args.tickers):
        out(f"{args.source}: {','.join(tickers)} (the market context of --tickers included)")
    serve(args.metrics_port, "collector")
    if args.source == "yfinance":
        from hft.data.sources.yfinance import YFinanceSource

        poller = collectors.YFinancePoller(tickers, args.interval, poll_s=args.poll_s,
                                           source=YFinanceSource(regular_session_only=not args.extended_hours),
                                           state_path=settings.home / "collectors" / f"yfinance-{args.interval}.json")
        result = collectors.run_poller(poller, bootstrap, polls=args.polls)
    else:
        if not (args.start and args.end):
            raise UserError(f"collect {args.source} needs --start and --end")
        if args.start > args.end:
            raise UserError(f"--start {args.start} is after --end {args.end}")
        if args.source == "replay":
            messages = collectors.replay(args.lake or settings.lake_root, tickers, args.start, args.end, args.interval)
        else:
            messages = collectors.synthetic(tickers, args.start, args.end, args.interval)
        result = collectors.publish(collectors.paced(messages, args.speed), bootstrap, source=args.source,
                                    limit=args.limit)
    out(f"{args.source}: {result.sent} bars sent, {result.failed} failed in {result.seconds:.1f}s")
    return EXIT_OK if result.failed == 0 else EXIT_FAILED


def cmd_stream(args: argparse.Namespace, settings: Settings) -> int:
    from hft.spark_submit import start_stream_job, stream_job_command

    command = stream_job_command(stack_config(), args.master, args.tickers, args.trigger, args.checkpoint,
                                 args.metrics_port, args.stop_when_idle, args.max_offsets, args.jvm_metrics_port,
                                 args.engine, args.state_partitions)
    if not args.supervise:
        return start_stream_job(command).wait()
    from hft.supervisor import supervise

    # its own session: a kill of the driver's process group leaves the supervisor, which starts it again
    return supervise(lambda: start_stream_job(command, new_session=True), "streaming job")


def register(sub) -> None:
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
    p.add_argument("--jvm-metrics-port", type=int, default=9110,
                   help="the Spark driver JVM's metrics (Prometheus JMX exporter agent) on 127.0.0.1 (0: off)")
    p.add_argument("--stop-when-idle", type=float, default=0.0, help="stop after N seconds without input (0: run until killed)")
    p.add_argument("--engine", default="driver", choices=["driver", "tasks"],
                   help="driver: each micro-batch in the driver (fastest on one machine); tasks: per ticker in Spark's "
                   "tasks with the feature state in Spark's state store (grows with the cluster's workers)")
    p.add_argument("--state-partitions", type=int, default=4,
                   help="tasks engine: state partitions, the most tasks a micro-batch runs at once (fixed by the "
                   "checkpoint's first batch)")
    p.add_argument("--supervise", action="store_true",
                   help="restart the job when its driver dies (from its checkpoint: nothing lost, nothing twice), "
                   "waiting 1 s, then 2, 4... up to 30 s; give up after 10 restarts in 10 minutes")
    p.set_defaults(func=cmd_stream)
