"""Logs and trading events in Elasticsearch: index names, templates (ECS mappings), retention and search.

Two families of daily indices, each behind an alias that searches all its days:

* ``hft-logs-YYYY.MM.DD`` (alias ``hft-logs``): every process's ECS JSON log lines
  (:mod:`hft.observability.logging`), ``event.dataset: hft.log``.
* ``hft-events-YYYY.MM.DD`` (alias ``hft-events``): the trading record read from Kafka: bars
  (``hft.bar``), refused bars with their reason (``hft.dlq``), predictions (``hft.prediction``), orders, fills
  and halts (``hft.order``).

A document's day is its own ``@timestamp``'s (never the shipper's clock), so a document sent twice lands in
the same index under the same id: shipping is at-least-once without duplicates. Every document about a bar
carries its correlation id (:func:`hft.schemas.correlation_id`) as ``trace.id``. The node has no ILM (not on
Maven Central): :func:`apply_retention` deletes indices older than ``HFT_LOG_RETENTION_DAYS`` (14).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from hft.errors import UserError

LOGS, EVENTS = "hft-logs", "hft-events"
FAMILIES = (LOGS, EVENTS)
DEFAULT_RETENTION_DAYS = 14

_ECS_COMMON: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "message": {"type": "text"},
    "service": {"properties": {"name": {"type": "keyword"}}},
    "trace": {"properties": {"id": {"type": "keyword"}}},
    "event": {"properties": {"dataset": {"type": "keyword"}, "kind": {"type": "keyword"},
                             "action": {"type": "keyword"}, "reason": {"type": "keyword"}}},
    "log": {"properties": {"level": {"type": "keyword"}, "logger": {"type": "keyword"},
                           "file": {"properties": {"path": {"type": "keyword"}}}}},
    "process": {"properties": {"pid": {"type": "long"}}},
    "error": {"properties": {"type": {"type": "keyword"}, "message": {"type": "text"},
                             "stack_trace": {"type": "text", "index": False}}},
    "ecs": {"properties": {"version": {"type": "keyword"}}},
}

_EVENT_FIELDS: dict[str, Any] = {
    "ticker": {"type": "keyword"}, "interval": {"type": "keyword"}, "ts": {"type": "date"},
    "probability": {"type": "double"}, "model_version": {"type": "keyword"}, "close": {"type": "double"},
    "open": {"type": "double"}, "high": {"type": "double"}, "low": {"type": "double"},
    "volume": {"type": "double"}, "volatility": {"type": "double"}, "produced_ns": {"type": "long"},
    "predicted_ns": {"type": "long"}, "ts_ns": {"type": "long"}, "seq": {"type": "long"},
    "type": {"type": "keyword"}, "order_id": {"type": "long"}, "qty": {"type": "long"},
    "price": {"type": "double"}, "fee": {"type": "double"}, "position": {"type": "long"},
    "reason": {"type": "keyword"}, "detail": {"type": "text"},
    "value": {"type": "text", "index": False}, "value_b64": {"type": "keyword", "index": False},
    "kafka": {"properties": {"topic": {"type": "keyword"}, "partition": {"type": "integer"},
                             "offset": {"type": "long"}, "key": {"type": "keyword"}}},
}


def templates() -> dict[str, dict]:
    """The index templates, by name: daily indices of one shard, no replica (one node), malformed values
    kept in ``_source`` rather than refused; log fields under ``hft`` stored but not indexed (their types
    differ between processes), the trading events' fields mapped."""
    settings = {"number_of_shards": 1, "number_of_replicas": 0, "index.mapping.ignore_malformed": True,
                "refresh_interval": "1s"}
    return {
        LOGS: {"index_patterns": [f"{LOGS}-*"], "priority": 100,
               "template": {"settings": settings, "aliases": {LOGS: {}},
                            "mappings": {"dynamic": False,
                                         "properties": {**_ECS_COMMON, "hft": {"type": "object", "enabled": False}}}}},
        EVENTS: {"index_patterns": [f"{EVENTS}-*"], "priority": 100,
                 "template": {"settings": settings, "aliases": {EVENTS: {}},
                              "mappings": {"dynamic": False,
                                           "properties": {**_ECS_COMMON,
                                                          "hft": {"properties": _EVENT_FIELDS}}}}},
    }


def index_for(family: str, timestamp: str) -> str:
    """The daily index of a document from its ``@timestamp`` (ISO-8601, UTC)."""
    day = timestamp[:10]
    if len(day) != 10 or day[4] != "-" or day[7] != "-" or not (day[:4] + day[5:7] + day[8:]).isdigit():
        raise ValueError(f"not an ISO-8601 timestamp: {timestamp[:40]!r}")
    return f"{family}-{day.replace('-', '.')}"


def iso_ms(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def elasticsearch_url() -> str:
    """``HFT_ELASTICSEARCH_URL``, else the stack's node (``HFT_ELASTICSEARCH_PORT``)."""
    url = os.environ.get("HFT_ELASTICSEARCH_URL", "").strip()
    if url:
        return url
    from hft.stack import StackConfig

    return StackConfig.from_env().elasticsearch_url


def client(url: str | None = None, timeout: float = 10.0):
    from elasticsearch import Elasticsearch

    return Elasticsearch(url or elasticsearch_url(), request_timeout=timeout, retry_on_timeout=False, max_retries=0)


def ensure_templates(es) -> None:
    """Create or update the index templates (idempotent)."""
    for name, body in templates().items():
        es.indices.put_index_template(name=name, **body)


def retention_days() -> int:
    """``HFT_LOG_RETENTION_DAYS`` (14): daily indices older than this are deleted."""
    from hft.config import env_count

    try:
        return env_count("HFT_LOG_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def apply_retention(es, days: int, today: datetime | None = None) -> list[str]:
    """Delete the daily indices of both families older than ``days`` days; returns their names."""
    today = today or datetime.now(timezone.utc)
    cutoff = (today - timedelta(days=days)).strftime("%Y.%m.%d")
    doomed = []
    for family in FAMILIES:
        for name in es.indices.get(index=f"{family}-*", expand_wildcards="open,closed"):
            day = name[len(family) + 1:]
            if len(day) == 10 and day < cutoff:
                doomed.append(name)
    for name in sorted(doomed):
        es.indices.delete(index=name)
    return sorted(doomed)


@dataclass(frozen=True)
class Query:
    """What ``hft logs search`` asks for; every field optional.

    Attributes:
        text: full-text match on ``message`` (logs) / ``hft.detail`` and ``message`` (events).
        service: ``service.name``; level: minimum log level (``warning`` finds warning, error, critical).
        since, until: ISO-8601 or relative (``15m``, ``2h``, ``3d``) bounds on ``@timestamp``.
        correlation_id: ``trace.id``; dataset: ``hft.log``, ``hft.dlq``, ``hft.prediction``, ``hft.order``, ...
        reason: the DLQ reason or the order event's reason (``event.reason``).
    """

    text: str | None = None
    service: str | None = None
    level: str | None = None
    since: str | None = None
    until: str | None = None
    correlation_id: str | None = None
    dataset: str | None = None
    reason: str | None = None


LEVELS = ("debug", "info", "warning", "error", "critical")


def _time_bound(value: str, now: datetime) -> str:
    units = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
    if value[-1:] in units and value[:-1].isdigit():
        return (now - timedelta(**{units[value[-1]]: int(value[:-1])})).isoformat()
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"time {value!r}: give ISO-8601 (2026-12-03T10:00Z) or an age (15m, 2h, 3d)") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()


def build_query(q: Query, now: datetime | None = None) -> dict:
    """The Elasticsearch bool query of ``q``."""
    now = now or datetime.now(timezone.utc)
    must: list[dict] = []
    filters: list[dict] = []
    if q.text:
        must.append({"multi_match": {"query": q.text, "fields": ["message", "hft.detail", "error.message"]}})
    if q.service:
        filters.append({"term": {"service.name": q.service}})
    if q.level:
        level = q.level.lower()
        if level not in LEVELS:
            raise UserError(f"level {q.level!r}: pick one of {', '.join(LEVELS)}")
        filters.append({"terms": {"log.level": list(LEVELS[LEVELS.index(level):])}})
    if q.correlation_id:
        filters.append({"term": {"trace.id": q.correlation_id}})
    if q.dataset:
        filters.append({"term": {"event.dataset": q.dataset}})
    if q.reason:
        filters.append({"term": {"event.reason": q.reason}})
    if q.since or q.until:
        bounds = {}
        if q.since:
            bounds["gte"] = _time_bound(q.since, now)
        if q.until:
            bounds["lte"] = _time_bound(q.until, now)
        filters.append({"range": {"@timestamp": bounds}})
    return {"bool": {"must": must or [{"match_all": {}}], "filter": filters}}


def search(es, q: Query, limit: int = 100, families: tuple[str, ...] = FAMILIES) -> list[dict]:
    """The newest ``limit`` documents matching ``q`` (oldest first, as a log reads), each a ``_source`` with
    ``_index`` and ``_id`` added."""
    resp = es.search(index=",".join(families), query=build_query(q), size=limit,
                     sort=[{"@timestamp": {"order": "desc"}}], ignore_unavailable=True, allow_no_indices=True)
    hits = resp["hits"]["hits"]
    return [{**h["_source"], "_index": h["_index"], "_id": h["_id"]} for h in reversed(hits)]
