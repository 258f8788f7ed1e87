"""How every Kafka client logs in: the collectors, the stream (its Spark source and tasks), the executor's
``orders``, the log shipper, the stack's admin calls and Kafka's own CLI tools (``infra/kafka/bin/kafka``).

The stack's brokers take clients only on a SASL listener (SCRAM-SHA-512, :data:`MECHANISM`) as user
:data:`USER`. Its password is ``HFT_KAFKA_PASSWORD`` when set, else the one the first ``hft stack up``
generated into ``$HFT_HOME/secrets/kafka-password`` (0600); a client finds it the same way (the environment,
else that file under its own ``HFT_HOME``). With neither, a client connects without SASL: a Kafka of your own
without authentication. The password is handed to the client libraries in memory (librdkafka's settings, the
Kafka source's JAAS option, which Spark redacts) or in a 0600 file (the CLI tools'), never on a command line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: The stack's Kafka user and how it logs in.
USER = "hft"
PASSWORD_ENV = "HFT_KAFKA_PASSWORD"
MECHANISM = "SCRAM-SHA-512"
#: Its password's file under ``$HFT_HOME/secrets``.
SECRET_NAME = "kafka-password"


@dataclass(frozen=True)
class KafkaLogin:
    username: str
    password: str

    def __repr__(self) -> str:  # never the password
        return f"KafkaLogin(username={self.username!r}, password='***')"

    @property
    def jaas(self) -> str:
        """The JAAS line of Kafka's Java clients (and of the broker's own listener)."""
        return (f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{self.username}" '
                f'password="{self.password}";')


def login(home: Path | None = None) -> KafkaLogin | None:
    """The stack's user and password (module docstring): ``HFT_KAFKA_PASSWORD``, else the file under ``home``
    (default ``HFT_HOME``); None when there is neither (no SASL)."""
    from hft.config import stack_secret

    password = stack_secret(SECRET_NAME, PASSWORD_ENV, home)
    return KafkaLogin(USER, password) if password else None


def client_config(bootstrap: str, extra: dict | None = None, auth: KafkaLogin | None = None) -> dict:
    """librdkafka (confluent-kafka) settings for ``bootstrap``, logged in as ``auth`` (default :func:`login`),
    with the ``extra`` settings on top."""
    auth = auth or login()
    conf: dict = {"bootstrap.servers": bootstrap}
    if auth is not None:
        conf.update({"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
                     "sasl.username": auth.username, "sasl.password": auth.password})
    conf.update(extra or {})
    return conf


def java_properties(auth: KafkaLogin | None = None) -> dict[str, str]:
    """The same for Kafka's Java clients (the CLI tools' ``--command-config``; prefix ``kafka.`` for Spark's
    Kafka source and sink: :func:`spark_options`)."""
    auth = auth or login()
    if auth is None:
        return {}
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM, "sasl.jaas.config": auth.jaas}


def spark_options(auth: KafkaLogin | None = None) -> dict[str, str]:
    """Options of Spark's Kafka source and sink that log in (Spark redacts values naming a password)."""
    return {f"kafka.{k}": v for k, v in java_properties(auth).items()}
