"""The log shipper: every process's ECS JSON log file and the trading record on Kafka, into Elasticsearch.

Like Filebeat, it tails the files of ``<HFT_HOME>/logs`` (:func:`hft.observability.logging.log_dir`); it also
reads the Kafka topics of the trading record (bars, DLQ, predictions, orders and fills) with its own consumer
group. Guarantees:

* **At least once, no duplicates.** A document's id is where it came from (file name and byte offset; topic,
  partition and offset) and its index is its own day (:mod:`hft.observability.elastic`), so a document sent
  again replaces itself. Positions move only after Elasticsearch acknowledged every document before them:
  the file offsets in ``<run_dir>/shipper/positions.json`` (written atomically), the Kafka offsets committed
  to the group.
* **Survives kill -9**: it resumes from those positions.
* **Buffers while Elasticsearch is down**: the files and the topics are the buffer; the shipper retries with
  back-off (up to 30 s) and catches up when the node is back.
* A line that is not JSON, or a document the node refuses (a mapping error), is indexed as plain text under
  the same id with ``error.message`` saying why: nothing is dropped.

Run it as the stack's ``log-shipper`` service or ``hft logs ship``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from hft.observability.elastic import EVENTS, LOGS, apply_retention, ensure_templates, index_for, iso_ms
from hft.observability.logging import LOG_SUFFIX

log = logging.getLogger("hft.shipper")

SHIPPED = Counter("hft_shipper_documents_total", "Documents Elasticsearch acknowledged", ["source"])
FAILURES = Counter("hft_shipper_failures_total", "Bulk requests that failed (retried)", ["kind"])
BEHIND = Gauge("hft_shipper_behind_bytes", "Bytes of log files not yet shipped")
GROUP = "hft-log-shipper"
#: The trading record's topics: which dataset each becomes.
TOPIC_DATASETS = {"market.bars": "hft.bar", "market.bars.dlq": "hft.dlq", "predictions": "hft.prediction",
                  "orders": "hft.order"}
MAX_LINE = 1 << 20  # a longer "line" is shipped in pieces of this size


@dataclass
class Batch:
    """Documents to send, and the positions to record once they are all acknowledged."""

    actions: list[dict] = field(default_factory=list)  # {"_id", "_source", "_source_kind"}; index: _index_of
    files: dict[str, int] = field(default_factory=dict)  # file name -> offset after the batch
    kafka: list[Any] = field(default_factory=list)  # confluent TopicPartition(offset + 1) to commit


# -- sources ---------------------------------------------------------------------------------------------------
class Positions:
    """File name -> byte offset shipped, in a JSON file replaced atomically (fsync'ed)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.offsets: dict[str, int] = {k: int(v) for k, v in json.loads(path.read_text()).items()}
        except FileNotFoundError:
            self.offsets = {}
        except (ValueError, AttributeError) as exc:
            raise ValueError(f"{path} is not a positions file ({exc}): move it away to ship from the start") from None

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.offsets, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)


def _doc_id(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()[:24]


def _service_of(name: str) -> str:
    """``<service>-<YYYYmmddTHHMMSS>-<pid>.json`` -> ``<service>``."""
    stem = name[: -len(LOG_SUFFIX)]
    parts = stem.rsplit("-", 2)
    return parts[0] if len(parts) == 3 else stem


def log_document(line: bytes, name: str, offset: int) -> dict:
    """One log line as a document (an ECS JSON object as it is; anything else as text with the reason)."""
    text = line.decode("utf-8", "replace")
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or not isinstance(doc.get("@timestamp"), str):
            raise ValueError("not an ECS log object")
        index_for(LOGS, doc["@timestamp"])
    except ValueError as exc:
        doc = {"@timestamp": iso_ms(time.time_ns() // 1_000_000), "message": text,
               "service": {"name": _service_of(name)}, "error": {"message": f"unparsed log line: {exc}"[:500]}}
    doc.setdefault("event", {})
    if isinstance(doc["event"], dict):
        doc["event"].setdefault("dataset", "hft.log")
    doc["log.file.path"] = name
    doc["log.offset"] = offset
    return doc


class FileSource:
    """The log files of one folder, from their recorded offsets."""

    def __init__(self, folder: Path, positions: Positions):
        self.folder = folder
        self.positions = positions

    def behind(self) -> int:
        total = 0
        for path in self.folder.glob(f"*{LOG_SUFFIX}"):
            try:
                total += max(path.stat().st_size - self.positions.offsets.get(path.name, 0), 0)
            except FileNotFoundError:
                pass
        return total

    def read(self, batch: Batch, max_docs: int, max_bytes: int = 8 << 20) -> None:
        budget = max_bytes
        for path in sorted(self.folder.glob(f"*{LOG_SUFFIX}"), key=lambda p: p.name):
            if len(batch.actions) >= max_docs or budget <= 0:
                return
            start = self.positions.offsets.get(path.name, 0)
            try:
                size = path.stat().st_size
                if size < start:  # truncated or replaced: ship it again from the start
                    log.warning("log file %s shrank below its shipped offset %d: shipping it from the start", path, start)
                    start = 0
                if size == start:
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    data = f.read(min(size - start, budget))
            except FileNotFoundError:
                continue
            pos = start
            for line in data.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    if len(line) < MAX_LINE:
                        break  # a line still being written: next time
                if line.strip():
                    batch.actions.append({"_id": _doc_id(path.name, pos), "_source_kind": "log",
                                          "_source": log_document(line.rstrip(b"\r\n"), path.name, pos)})
                pos += len(line)
                if len(batch.actions) >= max_docs:
                    break
            budget -= pos - start
            if pos > start:
                batch.files[path.name] = pos

    def commit(self, batch: Batch) -> None:
        if batch.files:
            self.positions.offsets.update(batch.files)
            self.positions.save()

    def forget_missing(self) -> None:
        present = {p.name for p in self.folder.glob(f"*{LOG_SUFFIX}")}
        gone = [name for name in self.positions.offsets if name not in present]
        for name in gone:
            del self.positions.offsets[name]
        if gone:
            self.positions.save()


def event_document(topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None,
                   timestamp_ms: int) -> dict:
    """One Kafka record of the trading record as a document: its fields under ``hft``, its correlation id."""
    from hft.streaming.messages import message_correlation_id

    dataset = TOPIC_DATASETS.get(topic, "hft.event")
    doc: dict[str, Any] = {"@timestamp": iso_ms(timestamp_ms), "event": {"dataset": dataset, "kind": "event"},
                           "service": {"name": dataset.removeprefix("hft.")}}
    kafka = {"topic": topic, "partition": partition, "offset": offset,
             "key": key.decode("utf-8", "replace")[:256] if key else None}
    text = value.decode("utf-8", "replace") if value is not None else ""
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        doc.update(message=text[:4096], error={"message": "record is not a JSON object"}, hft={"kafka": kafka})
        return doc
    fields = {k: v for k, v in body.items() if k not in ("schema", "version")}
    cid = None
    if dataset == "hft.dlq":
        original = fields.get("value")
        try:
            cid = message_correlation_id(json.loads(original)) if isinstance(original, str) else None
        except ValueError:
            cid = None
        doc["event"]["reason"] = fields.get("reason")
        doc["message"] = f"{fields.get('reason')}: {fields.get('detail')}"
    elif dataset == "hft.order":
        cid = fields.get("correlation_id")
        doc["event"]["action"] = fields.get("type")
        doc["event"]["reason"] = fields.get("reason")
        doc["message"] = (f"{fields.get('type')} {fields.get('ticker')} order {fields.get('order_id')} "
                          f"qty {fields.get('qty')} @ {fields.get('price')}")
    else:
        cid = message_correlation_id(fields)
        if dataset == "hft.prediction":
            doc["message"] = f"prediction {fields.get('ticker')} p={fields.get('probability')} model {fields.get('model_version')}"
        else:
            doc["message"] = f"bar {fields.get('ticker')} {fields.get('ts')} close {fields.get('close')}"
    if isinstance(cid, str) and cid:
        doc["trace"] = {"id": cid}
    fields.pop("correlation_id", None)
    if isinstance(fields.get("ts"), int) and not isinstance(fields.get("ts"), bool):
        fields["ts"] = fields["ts"] if abs(fields["ts"]) < 2**53 else None
    doc["hft"] = {**fields, "kafka": kafka}
    return doc


class KafkaSource:
    """The trading record's topics, read by the shipper's consumer group (offsets committed after indexing)."""

    def __init__(self, bootstrap: str, topics: Iterable[str], group: str = GROUP):
        from confluent_kafka import Consumer

        self.topics = list(topics)
        from hft.kafka_conn import client_config

        self.consumer = Consumer(client_config(bootstrap, {
            "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest", "log_level": 0,
            "max.poll.interval.ms": 86_400_000, "session.timeout.ms": 30_000}))
        self.consumer.subscribe(self.topics)

    def read(self, batch: Batch, max_docs: int, timeout: float) -> None:
        from confluent_kafka import KafkaError, TopicPartition

        if max_docs <= 0:
            return
        last: dict[tuple[str, int], int] = {}
        for msg in self.consumer.consume(num_messages=max_docs, timeout=timeout):
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka: %s", err)
                continue
            topic, part, off = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
            _, ts = msg.timestamp()
            batch.actions.append({"_id": _doc_id(topic, part, off), "_source_kind": topic,
                                  "_source": event_document(topic, part, off, msg.key(), msg.value(),
                                                            ts if ts and ts > 0 else time.time_ns() // 1_000_000)})
            last[(topic, part)] = off
        batch.kafka = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]

    def commit(self, batch: Batch) -> None:
        if batch.kafka:
            self.consumer.commit(offsets=batch.kafka, asynchronous=False)

    def rewind(self, batch: Batch) -> None:
        """After a failed send: read the batch's records again (from the committed offsets)."""
        from confluent_kafka import TopicPartition

        parts = [TopicPartition(tp.topic, tp.partition) for tp in batch.kafka]
        if not parts:
            return
        for tp in self.consumer.committed(parts, timeout=10):
            self.consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else -2))

    def close(self) -> None:
        self.consumer.close()


# -- sending ---------------------------------------------------------------------------------------------------
class SendError(Exception):
    """Elasticsearch did not take the batch (down, overloaded): retry it later."""


def _index_of(action: dict) -> str:
    return index_for(LOGS if action["_source_kind"] == "log" else EVENTS, action["_source"]["@timestamp"])


def send(es, actions: list[dict]) -> int:
    """Index ``actions`` (each under its own id); documents the node refuses for their content are indexed
    again as text with the reason. Raises SendError when any document could not be stored."""
    from elastic_transport import ConnectionError as TransportConnectionError
    from elastic_transport import ConnectionTimeout
    from elasticsearch import ApiError

    if not actions:
        return 0
    ops: list[dict] = []
    for a in actions:
        ops.append({"index": {"_index": _index_of(a), "_id": a["_id"]}})
        ops.append(a["_source"])
    try:
        resp = es.bulk(operations=ops, refresh=False)
    except (TransportConnectionError, ConnectionTimeout) as exc:
        raise SendError(f"Elasticsearch unreachable: {exc}") from None
    except ApiError as exc:
        raise SendError(f"bulk refused: {exc}") from None
    if not resp.get("errors"):
        return len(actions)
    retry_as_text: list[dict] = []
    for a, item in zip(actions, resp["items"], strict=True):
        result = item["index"]
        status = result.get("status", 500)
        if status < 300:
            continue
        if 400 <= status < 500 and status != 429:  # the content: keep it as text, under the same id
            src = a["_source"]
            retry_as_text.append({**a, "_source": {
                "@timestamp": src["@timestamp"], "message": json.dumps(src, default=str)[:32_000],
                "event": {"dataset": "hft.unindexed"}, "service": src.get("service") if isinstance(src.get("service"), dict) else None,
                "error": {"type": str(result.get("error", {}).get("type")),
                          "message": str(result.get("error", {}).get("reason"))[:1000]}}})
        else:
            raise SendError(f"document {a['_id']}: status {status}: {result.get('error')}")
    if retry_as_text:
        log.warning("%d documents refused as they were: indexed as text", len(retry_as_text))
        send(es, retry_as_text)
    return len(actions)


class Shipper:
    """Files and topics -> Elasticsearch, until stopped (:meth:`run`) or once (:meth:`ship_once`)."""

    def __init__(self, es, logs_folder: Path, positions_file: Path, kafka: KafkaSource | None = None,
                 batch_size: int = 2000, retention_days: int | None = None):
        self.es = es
        self.files = FileSource(logs_folder, Positions(positions_file))
        self.kafka = kafka
        self.batch_size = batch_size
        self.retention_days = retention_days
        self._templates = False
        self._retention_at = 0.0
        self.stopping = False

    def _prepare(self) -> None:
        if not self._templates:
            ensure_templates(self.es)
            self._templates = True
        if self.retention_days and time.monotonic() >= self._retention_at:
            deleted = apply_retention(self.es, self.retention_days)
            if deleted:
                log.info("retention: deleted %s", ", ".join(deleted))
            self.files.forget_missing()
            self._retention_at = time.monotonic() + 3600

    def ship_once(self, kafka_timeout: float = 0.5) -> int:
        """One batch: read, send, record positions. Returns the documents shipped; raises SendError."""
        from elastic_transport import ConnectionError as TransportConnectionError
        from elastic_transport import ConnectionTimeout
        from elasticsearch import ApiError

        try:
            self._prepare()
        except (TransportConnectionError, ConnectionTimeout, ApiError) as exc:
            raise SendError(f"Elasticsearch not ready: {exc}") from None
        batch = Batch()
        self.files.read(batch, self.batch_size)
        if self.kafka is not None:
            self.kafka.read(batch, self.batch_size - len(batch.actions), timeout=kafka_timeout)
        try:
            send(self.es, batch.actions)
        except SendError:
            if self.kafka is not None:
                self.kafka.rewind(batch)
            raise
        self.files.commit(batch)
        if self.kafka is not None:
            self.kafka.commit(batch)
        kinds: dict[str, int] = {}
        for a in batch.actions:
            kinds[a["_source_kind"]] = kinds.get(a["_source_kind"], 0) + 1
        for kind, n in kinds.items():
            SHIPPED.labels(kind).inc(n)
        BEHIND.set(self.files.behind())
        return len(batch.actions)

    def run(self, idle_s: float = 0.5) -> None:
        backoff = 0.5
        while not self.stopping:
            try:
                n = self.ship_once()
            except SendError as exc:
                FAILURES.labels("unavailable").inc()
                log.warning("shipping paused, retrying in %.1f s: %s", backoff, str(exc)[:300])
                time.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
                continue
            if backoff > 0.5:
                log.info("Elasticsearch is back: shipping again")
            backoff = 0.5
            if n == 0:
                time.sleep(idle_s)


def main(argv: list[str] | None = None) -> int:
    """``python -m hft.observability.shipper``: the stack's log-shipper service (settings from the env)."""
    import argparse

    from hft.config import Settings
    from hft.observability import metrics
    from hft.observability.elastic import client, retention_days
    from hft.observability.logging import configure_logging, log_dir
    from hft.stack import StackConfig

    parser = argparse.ArgumentParser(prog="hft-log-shipper")
    parser.add_argument("--elasticsearch", default=None, help="URL (default HFT_ELASTICSEARCH_URL or the stack's)")
    parser.add_argument("--kafka", default=None, help="bootstrap servers (default the stack's); 'none': files only")
    parser.add_argument("--topics", default=os.environ.get("HFT_SHIPPER_TOPICS", ",".join(TOPIC_DATASETS)))
    parser.add_argument("--metrics-port", type=int, default=0, help="/metrics on 127.0.0.1 (0: off)")
    parser.add_argument("--run-dir", default=None, help="where positions.json lives (default <HFT_HOME>/run)")
    args = parser.parse_args(argv)
    configure_logging(service="hft-log-shipper")
    settings, stack = Settings.from_env(), StackConfig.from_env()
    es = client(args.elasticsearch)
    bootstrap = args.kafka or stack.kafka_bootstrap
    topics = [t for t in args.topics.split(",") if t.strip()]
    kafka = KafkaSource(bootstrap, topics) if bootstrap != "none" and topics else None
    run_dir = Path(args.run_dir) if args.run_dir else stack.run_dir
    shipper = Shipper(es, log_dir(settings.home), run_dir / "shipper" / "positions.json", kafka,
                      retention_days=retention_days())
    metrics.serve(args.metrics_port, "log-shipper")

    def stop(*_: object) -> None:
        shipper.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("shipping %s and topics %s to Elasticsearch", log_dir(settings.home), topics if kafka else "none")
    try:
        shipper.run()
    finally:
        if kafka is not None:
            kafka.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


__all__ = ["Batch", "FileSource", "KafkaSource", "Positions", "SendError", "Shipper", "event_document", "log_document",
           "send"]
