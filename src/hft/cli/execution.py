"""``hft execute``: the executor service (Redis predictions -> C++ executor -> paper exchange), and its
kill switch (``halt``/``resume``) and ``status``."""

from __future__ import annotations

import argparse

from hft.cli._common import EXIT_OK, arg_tickers, out, stack_config
from hft.config import Settings
from hft.errors import UserError
from hft.schemas import RedisKeys


def cmd_execute(args: argparse.Namespace, settings: Settings) -> int:
    import redis

    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService, set_halt
    from hft.redis_conn import connect

    config = stack_config()
    url = args.redis or config.redis_url
    r = connect(url)
    try:
        r.ping()
    except redis.RedisError as exc:
        raise UserError(f"cannot reach Redis at {url}: {exc} (start it with `hft stack up`)") from None
    if args.action in ("halt", "resume"):
        set_halt(r, halt=args.action == "halt")
        out("kill switch engaged: the executor halts before its next decision" if args.action == "halt"
            else "kill switch released: the executor resumes at its next batch")
        return EXIT_OK
    if args.action == "status":
        keys = RedisKeys()
        state: dict[str, str] = r.hgetall(keys.exec_state)
        positions: dict[str, str] = r.hgetall(keys.positions)
        if not state:
            out("no executor state in Redis yet")
            return EXIT_OK
        out(" ".join(f"{k}={v}" for k, v in sorted(state.items())))
        out(" ".join(f"{t}={q}" for t, q in sorted(positions.items())) or "no positions")
        return EXIT_OK
    try:
        exec_config = ExecConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    kafka = None if args.no_kafka else orders_sink(config, "hft-executor")
    from hft.observability.metrics import serve

    serve(args.metrics_port, "executor")
    service = ExecutionService(r, args.journal or settings.home / "executor", args.tickers or list(settings.tickers),
                               exec_config, kafka=kafka, batch=args.batch, replay_clock=args.replay_clock)
    try:
        totals = service.run(stop_when_idle_s=args.stop_when_idle or None)
    finally:
        service.close()
    out(f"executor: {totals.get('entries', 0)} predictions read, {totals.get('orders', 0)} orders, "
        f"{totals.get('fills', 0)} fills")
    for line in service.summary():
        out(line)
    return EXIT_OK


def orders_sink(config, client_id: str):
    """A Kafka sink for ``orders`` on the stack ``config``, the topic created if missing."""
    from hft import stack
    from hft.execution.service import ORDERS_TOPIC
    from hft.streaming.kafka_io import TopicSink

    stack.ensure_topics(config.kafka_bootstrap, stack.orders_topic())
    return TopicSink(config.kafka_bootstrap, ORDERS_TOPIC, client_id=client_id)


def register(sub) -> None:
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
