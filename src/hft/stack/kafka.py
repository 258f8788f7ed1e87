"""Kafka clients of the stack: the health check and idempotent topic creation (confluent-kafka)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from hft.kafka_conn import KafkaLogin
from hft.stack.config import StackError

log = logging.getLogger("hft.stack")

CLEANUP_POLICIES = ("delete", "compact", "compact,delete", "delete,compact")


@dataclass(frozen=True)
class TopicSpec:
    """A topic as the pipeline wants it.

    Attributes:
        partitions: number of partitions (at least 1).
        retention_ms: ``retention.ms``; -1 keeps messages forever.
        cleanup_policy: ``cleanup.policy``: ``delete``, ``compact`` or both.
        replication_factor: replicas of each partition; -1 (the default): the cluster's
            ``default.replication.factor`` (1 on one broker, 3 on a cluster of 3 and more, where
            ``min.insync.replicas`` is 2).
    """

    partitions: int
    retention_ms: int
    cleanup_policy: str = "delete"
    replication_factor: int = -1

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError(f"partitions must be >= 1, got {self.partitions}")
        if self.retention_ms < -1 or self.retention_ms == 0:
            raise ValueError(f"retention_ms must be positive or -1 (forever), got {self.retention_ms}")
        if self.cleanup_policy not in CLEANUP_POLICIES:
            raise ValueError(f"cleanup_policy must be one of {CLEANUP_POLICIES}, got {self.cleanup_policy!r}")
        if self.replication_factor < 1 and self.replication_factor != -1:
            raise ValueError(f"replication_factor must be >= 1 or -1 (the cluster's default), "
                             f"got {self.replication_factor}")

    def configs(self) -> dict[str, str]:
        return {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}


def _ck() -> Any:
    try:
        import confluent_kafka
        import confluent_kafka.admin  # noqa: F401
    except ImportError:
        raise StackError("python package confluent-kafka is missing: run `make setup`") from None
    return confluent_kafka


def admin_client(bootstrap: str, auth: KafkaLogin | None = None, **extra: Any) -> Any:
    """A confluent-kafka AdminClient that keeps quiet about brokers it cannot reach yet, logged in as ``auth``
    (default :func:`hft.kafka_conn.login`)."""
    from hft.kafka_conn import client_config

    ck = _ck()
    return ck.admin.AdminClient(client_config(bootstrap, {"log_level": 0, "socket.connection.setup.timeout.ms": 2000,
                                                          **extra}, auth))


def kafka_health(bootstrap: str, timeout: float = 3.0, node: int | None = None,
                 auth: KafkaLogin | None = None) -> tuple[bool, str]:
    """(healthy, detail): a metadata request (``list_topics``) answered by at least one broker, and with ``node``,
    one that counts that node id among the cluster's brokers."""
    ck = _ck()
    try:
        md = admin_client(bootstrap, auth).list_topics(timeout=timeout)
    except ck.KafkaException as e:
        return False, f"metadata request failed: {e.args[0] if e.args else e}"
    if not md.brokers:
        return False, "metadata answered with no broker"
    user_topics = sorted(t for t in md.topics if not t.startswith("__"))
    detail = f"{len(md.brokers)} broker(s), {len(user_topics)} topic(s)"
    if node is not None:
        if node not in md.brokers:
            return False, f"node {node} not yet among the brokers {sorted(md.brokers)}"
        detail = f"node {node} of {sorted(md.brokers)}; {detail}"
    return True, detail


def ensure_topics(bootstrap: str, topics: dict[str, TopicSpec], timeout: float = 30.0) -> dict[str, str]:
    """Create the topics that do not exist yet; leave existing ones as they are (idempotent).

    Returns ``{topic: "created" | "exists" | "exists (N partitions, wanted M)"}``. Waits until every created
    topic has a leader on each partition, so a producer can write at once. Raises StackError when the broker
    cannot be reached or refuses a topic.
    """
    if not topics:
        return {}
    ck = _ck()
    admin = admin_client(bootstrap)
    try:
        existing = admin.list_topics(timeout=timeout).topics
    except ck.KafkaException as e:
        why = e.args[0] if e.args else e
        raise StackError(f"Kafka at {bootstrap} does not answer ({why}): is `hft stack up` running?") from None

    result: dict[str, str] = {}
    new = []
    for name, spec in topics.items():
        if name in existing:
            have = len(existing[name].partitions)
            if have != spec.partitions:
                result[name] = f"exists ({have} partitions, wanted {spec.partitions})"
                log.warning("topic %s exists with %d partitions, not %d: left as it is", name, have, spec.partitions)
            else:
                result[name] = "exists"
        else:
            new.append(ck.admin.NewTopic(name, num_partitions=spec.partitions,
                                         replication_factor=spec.replication_factor, config=spec.configs()))
    if new:
        futures = admin.create_topics(new, operation_timeout=timeout, request_timeout=timeout)
        errors = []
        for name, fut in futures.items():
            try:
                fut.result()
                result[name] = "created"
            except ck.KafkaException as e:
                err = e.args[0]
                if err.code() == ck.KafkaError.TOPIC_ALREADY_EXISTS:  # created meanwhile by someone else
                    result[name] = "exists"
                else:
                    errors.append(f"{name}: {err.str()}")
        if errors:
            raise StackError("could not create Kafka topics: " + "; ".join(errors))
        _wait_for_leaders(admin, [t for t, r in result.items() if r == "created"], timeout)
    return {name: result[name] for name in topics}


def _wait_for_leaders(admin: Any, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        pending = [
            n for n in pending
            if n not in md.topics or md.topics[n].error is not None
            or not md.topics[n].partitions or any(p.leader < 0 for p in md.topics[n].partitions.values())
        ]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise StackError(f"Kafka topics created but without a leader after {timeout:.0f}s: {pending}")
        time.sleep(0.1)


def stream_topics() -> dict[str, TopicSpec]:
    """The real-time path's topics: ``market.bars``, its DLQ and ``predictions`` (partitions from
    ``HFT_BARS_PARTITIONS``, 2; retention from ``HFT_TOPIC_RETENTION_MS``, 7 days; the DLQ keeps 4x longer)."""
    import os

    from hft.streaming.messages import BARS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC

    partitions = int(os.environ.get("HFT_BARS_PARTITIONS", "2"))
    retention = int(os.environ.get("HFT_TOPIC_RETENTION_MS", str(7 * 86_400_000)))
    return {
        BARS_TOPIC: TopicSpec(partitions=partitions, retention_ms=retention),
        DLQ_TOPIC: TopicSpec(partitions=1, retention_ms=4 * retention),
        PREDICTIONS_TOPIC: TopicSpec(partitions=partitions, retention_ms=retention),
    }


def orders_topic() -> dict[str, TopicSpec]:
    """The executor's ``orders`` topic (one partition: one ordered record of orders and fills)."""
    from hft.execution.service import ORDERS_TOPIC

    return {ORDERS_TOPIC: TopicSpec(partitions=1, retention_ms=7 * 86_400_000)}

