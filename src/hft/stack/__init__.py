"""The local stack on 127.0.0.1: Kafka (KRaft, single node), Redis, the MLflow tracking server, Airflow
(API server with the UI, scheduler, DAG processor: ``up(cfg, ["airflow"])``, see :mod:`hft.stack.airflow`), and
PostgreSQL for MLflow and Airflow when ``HFT_METADATA_DB=postgres`` (:mod:`hft.stack.postgres`), monitoring
(``up(cfg, ["monitoring"])``, :mod:`hft.stack.monitoring`) and an Elasticsearch 9.5 node for logs and search
(``up(cfg, ["logging"])``, ``cfg.elasticsearch_url``, :mod:`hft.stack.elasticsearch`).

    from hft.stack import StackConfig, up, status, down, ensure_topics, TopicSpec

    cfg = StackConfig.from_env()            # <HFT_HOME>/run, ports from HFT_*_PORT
    up(cfg)                                 # idempotent; waits until each service is healthy
    ensure_topics(cfg.kafka_bootstrap, {"bars": TopicSpec(partitions=4, retention_ms=86_400_000)})
    status(cfg)["kafka"].healthy
    down(cfg)

Programs and jars come from ``make setup`` (infra/setup.sh): Kafka's jars in ``build/kafka-libs``,
``/usr/bin/redis-server`` from Debian, MLflow from the venv, Elasticsearch in ``build/elasticsearch``.
Logs: ``<run_dir>/<service>.log``.
"""

from hft.stack.airflow import admin_credentials, airflow_env, airflow_login
from hft.stack.config import (
    AIRFLOW_SERVICES,
    ALL_SERVICES,
    LOGGING_SERVICES,
    MONITORING_SERVICES,
    SERVICES,
    StackConfig,
    StackError,
    expand_services,
    repo_root,
)
from hft.stack.kafka import TopicSpec, ensure_topics, kafka_health, orders_topic, stream_topics
from hft.stack.services import ServiceStatus, down, listening, status, up, with_dependencies
from hft.stack.spark import hft_spark_jar, spark_kafka_jars, streaming_jars

__all__ = [
    "AIRFLOW_SERVICES",
    "ALL_SERVICES",
    "LOGGING_SERVICES",
    "MONITORING_SERVICES",
    "admin_credentials",
    "airflow_env",
    "airflow_login",
    "expand_services",
    "SERVICES",
    "ServiceStatus",
    "StackConfig",
    "StackError",
    "TopicSpec",
    "down",
    "ensure_topics",
    "kafka_health",
    "listening",
    "orders_topic",
    "repo_root",
    "hft_spark_jar",
    "spark_kafka_jars",
    "streaming_jars",
    "status",
    "stream_topics",
    "up",
    "with_dependencies",
]
