"""``hft logs``: search the logs and the trading record in Elasticsearch (``search``), or run the shipper that
puts them there (``ship``, what the stack's ``log-shipper`` service runs)."""

from __future__ import annotations

import argparse
import json

from hft.cli._common import EXIT_FAILED, EXIT_OK, out
from hft.config import Settings
from hft.errors import UserError


def _line(doc: dict) -> str:
    level = doc.get("log.level") or (doc.get("log") or {}).get("level") or doc.get("event", {}).get("action") or "-"
    service = (doc.get("service") or {}).get("name", "-")
    cid = (doc.get("trace") or {}).get("id")
    dataset = (doc.get("event") or {}).get("dataset", "-")
    text = doc.get("message") or ""
    return f"{doc.get('@timestamp', '-')} {dataset:<14} {service:<20} {level:<8} {text}" + (f"  [{cid}]" if cid else "")


def cmd_logs(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "ship":
        from hft.observability.shipper import main

        return main([])
    from elastic_transport import ConnectionError as TransportConnectionError

    from hft.observability.elastic import EVENTS, FAMILIES, LOGS, Query, client, search

    families = {"all": FAMILIES, "logs": (LOGS,), "events": (EVENTS,)}[args.source]
    q = Query(text=" ".join(args.text) or None, service=args.service, level=args.level, since=args.since,
              until=args.until, correlation_id=args.correlation_id, dataset=args.dataset, reason=args.reason)
    es = client(args.elasticsearch)
    try:
        docs = search(es, q, limit=args.limit, families=families)
    except TransportConnectionError:
        raise UserError(f"Elasticsearch does not answer at {args.elasticsearch or 'the stack'}: start it with "
                        "`hft stack up --services logging`") from None
    for doc in docs:
        out(json.dumps(doc, default=str) if args.json else _line(doc))
    return EXIT_OK if docs or not args.fail_empty else EXIT_FAILED


def register(sub) -> None:
    p = sub.add_parser("logs", help="search logs, DLQ records, predictions, orders and fills (Elasticsearch)",
                       description="search: the newest matching documents, oldest first. Examples:\n"
                       "  hft logs search --level warning --since 1h\n"
                       "  hft logs search --dataset hft.dlq --since 1d            why bars went to the DLQ\n"
                       "  hft logs search --correlation-id 'SPY@1709908260000'    a bar, its prediction, orders, fills\n"
                       "  hft logs search --service hft-execute kill switch",
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["search", "ship"])
    p.add_argument("text", nargs="*", help="words to match in the message")
    p.add_argument("--service", help="service.name, e.g. hft-stream, hft-execute, hft-collect, dlq, order")
    p.add_argument("--level", help="minimum level: debug, info, warning, error, critical")
    p.add_argument("--since", help="ISO-8601 time or an age: 15m, 2h, 3d")
    p.add_argument("--until", help="ISO-8601 time or an age")
    p.add_argument("--correlation-id", help="a bar's id (<TICKER>@<bar end, epoch ms>): every document about it")
    p.add_argument("--dataset", help="hft.log, hft.bar, hft.dlq, hft.prediction, hft.order")
    p.add_argument("--reason", help="a DLQ reason (implausible_time, not_json, ...) or an order event's reason")
    p.add_argument("--source", choices=["all", "logs", "events"], default="all")
    p.add_argument("--limit", type=int, default=100)
    p.add_argument("--json", action="store_true", help="one JSON document per line")
    p.add_argument("--fail-empty", action="store_true", help="exit 1 when nothing matches")
    p.add_argument("--elasticsearch", help="URL (default HFT_ELASTICSEARCH_URL or the stack's node)")
    p.set_defaults(func=cmd_logs)
