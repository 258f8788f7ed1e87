"""Jars that Spark needs for Kafka, fetched by ``make setup`` (infra/spark/pom.xml) into build/spark-jars."""

from __future__ import annotations

from hft.stack.config import StackError, repo_root

#: File-name prefixes of the connector and what it needs beyond pyspark's own jars.
SPARK_KAFKA_ARTIFACTS = (
    "spark-sql-kafka-0-10_2.13-",
    "spark-token-provider-kafka-0-10_2.13-",
    "kafka-clients-",
    "commons-pool2-",
)


def spark_kafka_jars() -> list[str]:
    """Absolute paths of the Spark Kafka connector jars, for ``spark-submit --jars ','.join(...)``
    (or ``spark.jars``). Raises StackError, naming ``make setup``, when one is missing."""
    folder = repo_root() / "build" / "spark-jars"
    jars = sorted(folder.glob("*.jar"))
    found: list[str] = []
    missing: list[str] = []
    for prefix in SPARK_KAFKA_ARTIFACTS:
        hits = [j for j in jars if j.name.startswith(prefix)]
        if hits:
            found.extend(str(j) for j in hits)
        else:
            missing.append(prefix.rstrip("-"))
    if missing:
        raise StackError(f"Spark Kafka connector jars missing in {folder} ({', '.join(missing)}): run `make setup`")
    return found
