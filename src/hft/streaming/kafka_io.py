"""Kafka producers of the real-time path (confluent-kafka): idempotent, acks=all, delivery checked."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from hft.errors import HftError
from hft.kafka_conn import KafkaLogin, client_config

log = logging.getLogger(__name__)


class DeliveryError(HftError, RuntimeError):
    """Kafka did not acknowledge some messages."""


#: How long a producer waits to fill a batch per partition (librdkafka ``linger.ms``), unless
#: ``HFT_KAFKA_LINGER_MS`` says otherwise. 20 rather than librdkafka's 5: at 5,000 bars/s over 4 partitions
#: a 5 ms linger sends ~6 bars per produce request, and the broker spent 0.30-0.63 of a core on them; with
#: 20 ms, 0.08-0.14 (and the producer 10% less), for at most 15 ms more latency (bench/streaming's load,
#: three alternating runs on 2 cores).
DEFAULT_LINGER_MS = 20


def producer_config(bootstrap: str, client_id: str = "hft", linger_ms: int | None = None,
                    auth: KafkaLogin | None = None) -> dict:
    """librdkafka settings of the project's producers: idempotent, acks=all, logged in (``auth``, default
    :func:`hft.kafka_conn.login`); ``linger_ms`` None: ``HFT_KAFKA_LINGER_MS`` or :data:`DEFAULT_LINGER_MS` (a bad
    value raises ValueError naming it)."""
    from hft.config import env_value, parse_setting

    if linger_ms is None:
        linger_ms = parse_setting("HFT_KAFKA_LINGER_MS", DEFAULT_LINGER_MS,
                                  env_value("HFT_KAFKA_LINGER_MS", str(DEFAULT_LINGER_MS)))
    return client_config(bootstrap, {
        "client.id": client_id,
        "enable.idempotence": True,  # implies acks=all and ordered, de-duplicated retries
        "acks": "all",
        "linger.ms": linger_ms,
        "message.timeout.ms": 30_000,
    }, auth)


def producer(bootstrap: str, client_id: str = "hft", linger_ms: int | None = None, extra: dict | None = None,
             auth: KafkaLogin | None = None):
    """A confluent-kafka Producer with :func:`producer_config` (and ``extra`` librdkafka settings)."""
    from confluent_kafka import Producer

    return Producer({**producer_config(bootstrap, client_id, linger_ms, auth), **(extra or {})})


class TopicSink:
    """Sends (key, value) pairs to one topic: :meth:`send` returns once all are acknowledged (raising
    :class:`DeliveryError` otherwise); :meth:`post` returns at once, and a delivery that fails later is
    logged and counted (``failed``, metric ``hft_kafka_delivery_failed_total``); :meth:`flush` waits.

    With ``transactional_id``, each :meth:`send` is one Kafka transaction (readers with
    ``isolation.level=read_committed``, librdkafka's default, see all of it or none), and a newer producer with
    the same id fences this one: its sends raise :class:`DeliveryError` (``fenced``) from then on."""

    def __init__(self, bootstrap: str, topic: str, client_id: str = "hft", transactional_id: str | None = None,
                 timeout_s: float = 30.0, auth: KafkaLogin | None = None):
        self.topic = topic
        self.bootstrap = bootstrap
        self.transactional = transactional_id is not None
        self.timeout_s = timeout_s
        self.p = producer(bootstrap, client_id, extra={"transactional.id": transactional_id} if self.transactional else None,
                          auth=auth)
        if self.transactional:
            self._txn(self.p.init_transactions, timeout_s)  # fences older producers with this id
        self.sent = 0
        self.failed = 0

    def _txn(self, call, *args) -> None:
        from confluent_kafka import KafkaException

        try:
            call(*args)
        except KafkaException as exc:
            err = exc.args[0]
            if err.txn_requires_abort():
                self.p.abort_transaction(self.timeout_s)
            fenced = " (fenced: a newer producer with this transactional id took over)" if err.fatal() else ""
            raise DeliveryError(f"transaction on {self.topic} failed{fenced}: {err}") from None

    def _callback(self, err, msg) -> None:
        if err is None:
            self.sent += 1
        else:
            from hft.observability.metrics import KAFKA_DELIVERY_FAILED

            self.failed += 1
            KAFKA_DELIVERY_FAILED.labels(self.topic).inc()
            log.error("delivery to %s failed: %s", self.topic, err)

    def produce(self, key: bytes | None, value: bytes) -> None:
        while True:
            try:
                self.p.produce(self.topic, value=value, key=key, on_delivery=self._callback)
                break
            except BufferError:  # local queue full: let deliveries drain
                self.p.poll(0.05)
        self.p.poll(0)

    def send(self, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        failed_before = self.failed
        if self.transactional:
            self._txn(self.p.begin_transaction)
            self.post(records)
            self._txn(self.p.commit_transaction, self.timeout_s)  # flushes; all acknowledged or raises
        else:
            self.post(records)
            self.flush()
        if self.failed > failed_before:
            raise DeliveryError(f"{self.failed - failed_before} message(s) to {self.topic} were not acknowledged")

    def post(self, records: Iterable[tuple[bytes | None, bytes]]) -> None:
        for key, value in records:
            self.produce(key, value)

    def flush(self, timeout_s: float = 30.0) -> None:
        left = self.p.flush(timeout_s)
        if left:
            raise DeliveryError(f"{left} message(s) to {self.topic} still unacknowledged after {timeout_s}s")


def partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition ids of ``topic`` (raises RuntimeError when the topic does not exist)."""
    from hft.stack.kafka import admin_client

    meta = admin_client(bootstrap).list_topics(topic, timeout=timeout_s)
    found = meta.topics.get(topic)
    if found is None or found.error is not None or not found.partitions:
        raise RuntimeError(f"Kafka topic {topic} not found at {bootstrap}: {found.error if found else 'no metadata'}")
    return sorted(found.partitions)


def starting_offsets_json(topic: str, committed: dict[tuple[str, int], int], partition_ids: list[int]) -> str:
    """Spark's ``startingOffsets`` JSON resuming every partition of ``topic`` at its committed offset
    (``-2``, the earliest, for a partition without one: it has never been processed)."""
    import json

    return json.dumps({topic: {str(p): committed.get((topic, p), -2) for p in partition_ids}})


def watermarks(bootstrap: str, topic: str, timeout_s: float = 10.0) -> dict[int, tuple[int, int]]:
    """Partition id -> (low, high) watermark offsets of ``topic``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(bootstrap, {"group.id": "hft-watermarks", "enable.auto.commit": False}))
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
                for p in partitions(bootstrap, topic, timeout_s)}
    finally:
        consumer.close()


def last_value(bootstrap: str, topic: str, partition: int = 0, timeout_s: float = 10.0,
               match: bytes | None = None) -> bytes | None:
    """The value of the last committed record of one partition (``read_committed``: records of aborted or open
    transactions do not count), None when it has none: read back from its end, further each time. ``match``:
    the last whose value holds these bytes (one writer's records among several writers')."""
    import time

    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer(client_config(bootstrap, {"group.id": "hft-last-value", "enable.auto.commit": False,
                                                  "isolation.level": "read_committed"}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
        back = 16
        while high > low:
            start = max(low, high - back)
            consumer.assign([TopicPartition(topic, partition, start)])
            last, deadline = None, time.monotonic() + timeout_s
            while True:  # up to the end: the position passes control records (transaction markers) too
                for m in consumer.consume(500, timeout=0.1):
                    if m.error() is None and (match is None or match in (m.value() or b"")):
                        last = m.value()
                if consumer.position([TopicPartition(topic, partition)])[0].offset >= high:
                    break
                if time.monotonic() > deadline:
                    raise DeliveryError(f"could not read {topic}[{partition}] up to offset {high} in {timeout_s} s")
            if last is not None or start == low:
                return last
            back *= 16
        return None
    finally:
        consumer.close()


def topic_size(bootstrap: str, topic: str, timeout_s: float = 10.0) -> int:
    """Records in ``topic``: the sum over its partitions of (high watermark - low watermark)."""
    return sum(high - low for low, high in watermarks(bootstrap, topic, timeout_s).values())


class KafkaLag:
    """The stream's consumer lag on ``topic`` as a metric: per partition, the broker's high watermark less the
    next offset the stream will process (its committed offsets, which live in Redis, not in a Kafka group).

    :meth:`update` is called after every micro-batch and measures at most every ``every_s`` seconds (one
    watermark request per partition); a failure is logged, never raised: a metric must not fail a batch.
    """

    def __init__(self, bootstrap: str, topic: str, every_s: float = 5.0):
        self.bootstrap, self.topic, self.every_s = bootstrap, topic, every_s
        self._consumer: Any = None
        self._next = 0.0

    def update(self, committed: Callable[[], dict[tuple[str, int], int]]) -> dict[int, int] | None:
        """Measure when due; ``committed()`` gives {(topic, partition): next offset}. The lag per partition."""
        import time

        if time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.every_s
        try:
            lag = self._measure(committed())
        except Exception as exc:  # noqa: BLE001 - see the class doc
            log.warning("consumer lag of %s not measured: %s", self.topic, exc)
            return None
        from hft.observability.metrics import STREAM_KAFKA_LAG

        for partition, n in lag.items():
            STREAM_KAFKA_LAG.labels(str(partition)).set(n)
        return lag

    def _measure(self, committed: dict[tuple[str, int], int]) -> dict[int, int]:
        from confluent_kafka import Consumer, TopicPartition

        if self._consumer is None:
            self._consumer = Consumer(client_config(self.bootstrap, {"group.id": "hft-lag",
                                                                     "enable.auto.commit": False}))
        out = {}
        for p in partitions(self.bootstrap, self.topic, 5.0):
            low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5.0)
            out[p] = max(high - max(committed.get((self.topic, p), low), low), 0)
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
