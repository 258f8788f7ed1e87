"""``hft execute``: the executor service (Redis predictions -> C++ executor -> paper exchange), and its
kill switch (``halt``/``resume``), ``status``, and a venue's outage drill (``silence``/``answer``)."""

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
    from hft.redis_conn import PASSWORD_ENV, connect, redacted

    config = stack_config()
    url = args.redis or config.redis_url
    r = connect(url)
    try:
        r.ping()
    except redis.AuthenticationError as exc:
        raise UserError(f"Redis at {redacted(url)} refused the login: {exc} (its password: {PASSWORD_ENV}, or the "
                        "URL's password_file)") from None
    except redis.RedisError as exc:
        raise UserError(f"cannot reach Redis at {redacted(url)}: {exc} (start it with `hft stack up`)") from None
    if args.action in ("halt", "resume"):
        set_halt(r, halt=args.action == "halt")
        out("kill switch engaged: the executor halts before its next decision" if args.action == "halt"
            else "kill switch released: the executor resumes at its next batch")
        return EXIT_OK
    if args.action in ("silence", "answer"):
        try:
            names = [name for name, _ in ExecConfig.from_env().venue_specs()]  # none without HFT_EXEC_VENUES
        except ValueError as exc:
            raise UserError(str(exc)) from None
        if args.venue not in names:
            raise UserError(f"--venue {args.venue!r}: not one of the venues of HFT_EXEC_VENUES "
                            f"({', '.join(names) or 'none set'})")
        key = RedisKeys().exec_silent_venues
        (r.sadd if args.action == "silence" else r.srem)(key, args.venue)
        out(f"venue {args.venue}: " + ("treated as not answering from the executor's next batch" if args.action ==
                                       "silence" else "answers again: its working orders are resolved at the next batch"))
        return EXIT_OK
    if args.action == "status":
        keys = RedisKeys()
        states = {"": r.hgetall(keys.exec_state)}  # one executor's, and each shard's (hft execute run --shards)
        for key in sorted(r.scan_iter(match=keys.exec_state + ":*", count=1000)):
            states[key[len(keys.exec_state) + 1:]] = r.hgetall(key)
        states = {k: v for k, v in states.items() if v}
        positions: dict[str, str] = r.hgetall(keys.positions)
        if not states:
            out("no executor state in Redis yet")
            return EXIT_OK
        for shard, state in states.items():
            out((f"shard {shard}: " if shard else "") + " ".join(f"{k}={v}" for k, v in sorted(state.items())))
        out(" ".join(f"{t}={q}" for t, q in sorted(positions.items())) or "no positions")
        return EXIT_OK
    try:
        exec_config = ExecConfig.from_env()
    except ValueError as exc:
        raise UserError(str(exc)) from None
    from hft.observability.metrics import serve

    serve(args.metrics_port, "executor")
    journal = args.journal or settings.home / "executor"
    tickers = args.tickers or list(settings.tickers)
    if args.shards:
        service, totals = _run_sharded(args, config, url, r, journal, tickers, exec_config)
        out(f"executor {args.instance or ''}: {totals.get('entries', 0)} predictions read, {totals.get('orders', 0)} "
            f"orders, {totals.get('fills', 0)} fills over {service.taken} shard takeover(s)")
        return EXIT_OK
    if not args.ha:
        kafka = None if args.no_kafka else orders_sink(config, "hft-executor")
        service = ExecutionService(r, journal, tickers, exec_config, kafka=kafka, batch=args.batch,
                                   replay_clock=args.replay_clock)
        try:
            totals = service.run(stop_when_idle_s=args.stop_when_idle or None)
        finally:
            service.close()
    else:
        service, totals = _run_ha(args, config, url, r, journal, tickers, exec_config)
    out(f"executor: {totals.get('entries', 0)} predictions read, {totals.get('orders', 0)} orders, "
        f"{totals.get('fills', 0)} fills")
    for line in service.summary():
        out(line)
    return EXIT_OK


def _run_ha(args, config, url, r, journal, tickers, exec_config):
    """``--ha``: this instance stands by until it holds the executor's lease, then leads (hft.execution.leader)."""
    import signal
    import sys

    from hft.execution.leader import LEASE_MS, HotStandby, Lease, ReplicatedJournal
    from hft.execution.service import ExecutionService
    from hft.redis_conn import replicas_to_ack

    try:
        lease = Lease(r, instance=args.instance, ttl_ms=args.lease_ms or LEASE_MS, replicas_to_ack=replicas_to_ack(url))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    replica = ReplicatedJournal(r, lease)
    if not args.no_kafka:
        ensure_orders_topic(config)  # once, not at each takeover

    def make_service():
        # a new transactional producer per leadership: its id is the role's, so it fences the last leader's
        kafka = None if args.no_kafka else orders_sink(config, f"hft-executor-{lease.instance}",
                                                       transactional_id="hft-executor", ensure=False)
        return ExecutionService(r, journal, tickers, exec_config, kafka=kafka, batch=args.batch,
                                replay_clock=args.replay_clock, fence=replica)

    # a clean stop (SIGTERM, as the stack and supervisors send) gives the lease up at once
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    standby = HotStandby(lease, replica, journal, make_service)
    out(f"executor {lease.instance}: standing by for the lease ({lease.ttl_ms} ms)")
    totals = standby.run(stop_when_idle_s=args.stop_when_idle or None)
    return standby.service, totals


def _run_sharded(args, config, url, r, journal, tickers, exec_config):
    """``--shards S``: this instance decides its fair share of the shards of the tickers (hft.execution.shards)."""
    import signal
    import sys

    from hft.execution.leader import LEASE_MS, default_instance
    from hft.execution.service import ExecutionService
    from hft.execution.shards import ShardedExecutor
    from hft.redis_conn import replicas_to_ack

    if not args.no_kafka:
        ensure_orders_topic(config)
    instance = args.instance or default_instance()

    def make_service(shard, replica, journal_dir):
        # a new transactional producer per takeover: its id is the shard's, so it fences the last holder's
        kafka = None if args.no_kafka else orders_sink(config, f"hft-executor-{instance}-{shard.name}",
                                                       transactional_id=f"hft-executor-{shard.name}", ensure=False)
        return ExecutionService(r, journal_dir, tickers, exec_config, kafka=kafka, batch=args.batch, block_ms=20,
                                replay_clock=args.replay_clock, fence=replica, shard=shard)

    try:
        sharded = ShardedExecutor(r, args.shards, instance, journal, make_service, ttl_ms=args.lease_ms or LEASE_MS,
                                  replicas_to_ack=replicas_to_ack(url))
    except ValueError as exc:
        raise UserError(str(exc)) from None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # a clean stop gives the leases up at once
    out(f"executor {instance}: taking its share of {args.shards} shards")
    totals = sharded.run(stop_when_idle_s=args.stop_when_idle or None)
    return sharded, totals


def ensure_orders_topic(config) -> None:
    from hft import stack

    stack.ensure_topics(config.kafka_bootstrap, stack.orders_topic())


def orders_sink(config, client_id: str, transactional_id: str | None = None, ensure: bool = True):
    """A Kafka sink for ``orders`` on the stack ``config`` (transactional with ``transactional_id``), the topic
    created first if missing (unless ``ensure`` is False: the caller did)."""
    from hft.execution.service import ORDERS_TOPIC
    from hft.streaming.kafka_io import TopicSink

    if ensure:
        ensure_orders_topic(config)
    return TopicSink(config.kafka_bootstrap, ORDERS_TOPIC, client_id=client_id, transactional_id=transactional_id)


def register(sub) -> None:
    p = sub.add_parser("execute", help="run the executor service, or halt/resume it (kill switch)")
    p.add_argument("action", nargs="?", default="run", choices=["run", "halt", "resume", "status", "silence", "answer"],
                   help="run; halt/resume (kill switch); status; silence/answer --venue NAME (a venue of "
                        "HFT_EXEC_VENUES stops answering / answers again: an outage drill)")
    p.add_argument("--venue", help="silence/answer: the venue's name in HFT_EXEC_VENUES")
    p.add_argument("--tickers", type=arg_tickers, help="universe (default HFT_TICKERS); others are refused")
    p.add_argument("--journal", help="journal folder (default <HFT_HOME>/executor)")
    p.add_argument("--redis", help="Redis URL (default: the local stack)")
    p.add_argument("--batch", type=int, default=1000, help="stream entries per decision batch")
    p.add_argument("--no-kafka", action="store_true", help="publish to Redis only, not to Kafka `orders`")
    p.add_argument("--replay-clock", action="store_true",
                   help="historical bars replayed now: a prediction arrives at its bar's end (stale guard)")
    p.add_argument("--metrics-port", type=int, default=9109)
    p.add_argument("--ha", action="store_true",
                   help="hot standby: lead only while holding the executor's lease in Redis, else stand by "
                        "(run two or more; the journal is replicated through Redis)")
    p.add_argument("--shards", type=int, default=0, metavar="S",
                   help="load-balanced: the tickers in S shards, each decided by one of the instances run with the "
                        "same S (on any machine sharing the Redis); each instance holds its fair share of the "
                        "shards' leases and takes over those of an instance that died (hft.execution.shards)")
    p.add_argument("--instance", help="this instance's name in the lease (default <host>-<pid>)")
    p.add_argument("--lease-ms", type=int, default=None,
                   help="--ha: the lease's time to live (default 2000); a standby takes over about this long after the leader dies")
    p.add_argument("--stop-when-idle", type=float, default=0.0, help="stop after N seconds without predictions (0: run until killed)")
    p.set_defaults(func=cmd_execute)
