"""Jars the streaming job needs on Spark's classpath: the Kafka connector, fetched by ``make setup``
(infra/spark/pom.xml) into build/spark-jars, and the project's own classes (``streaming/jvm``), compiled by
``make setup`` into build/hft-spark."""

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


#: The project's JVM classes (streaming/jvm), compiled by ``make setup``.
HFT_SPARK_JAR = "build/hft-spark/hft-spark.jar"


def hft_spark_jar() -> str:
    """Absolute path of the project's jar (``hft.spark.LocalCheckpointFileManager``); StackError naming
    ``make setup`` when it was not built."""
    jar = repo_root() / HFT_SPARK_JAR
    if not jar.is_file():
        raise StackError(f"{jar} not found (the project's Spark classes, streaming/jvm): run `make setup`")
    return str(jar)


def streaming_jars() -> list[str]:
    """Every jar the streaming job needs, for ``spark-submit --jars ','.join(...)``."""
    return [*spark_kafka_jars(), hft_spark_jar()]
