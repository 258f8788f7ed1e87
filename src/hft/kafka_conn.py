"""How every Kafka client logs in: the collectors, the stream (its Spark source and tasks), the executor's
``orders``, the log shipper, the stack's admin calls and Kafka's own CLI tools (``infra/kafka/bin/kafka``).

The stack's brokers take clients only on a SASL listener (SCRAM-SHA-512, :data:`MECHANISM`) as user
:data:`USER`. Its password is ``HFT_KAFKA_PASSWORD`` when set, else the one the first ``hft stack up``
generated into ``$HFT_HOME/secrets/kafka-password`` (0600); a client finds it the same way (the environment,
else that file under its own ``HFT_HOME``). With neither, a client connects without SASL: a Kafka of your own
without authentication. The password is handed to the client libraries in memory (librdkafka's settings, the
Kafka source's JAAS option, which Spark redacts) or in a 0600 file (the CLI tools'), never on a command line.

When the deployment's hosts file says ``tls = true`` (:mod:`hft.tls`) the same login goes over TLS
(``SASL_SSL``): the client checks the broker's certificate and address against the deployment's CA, handed
over as PEM text (no file: a Spark executor on another machine needs none).
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
    ca = _tls_ca()
    conf.update(_protocol(auth, ca))
    if auth is not None:
        conf.update({"sasl.mechanism": MECHANISM, "sasl.username": auth.username, "sasl.password": auth.password})
    if ca:
        conf.update({"ssl.ca.pem": ca, "ssl.endpoint.identification.algorithm": "https"})
    conf.update(extra or {})
    return conf


def _tls_ca() -> str | None:
    """The deployment's CA certificate when it uses TLS (:func:`hft.tls.enabled`), else None."""
    from hft import tls

    return tls.ca_pem() if tls.enabled() else None


def _protocol(auth: KafkaLogin | None, ca: str | None) -> dict[str, str]:
    """``security.protocol`` (librdkafka and the Java clients spell it alike): SASL with a login, SSL with the
    CA, both, or nothing at all (the clients' default, in clear)."""
    if auth is None and not ca:
        return {}
    return {"security.protocol": ("SASL_" if auth is not None else "") + ("SSL" if ca else "PLAINTEXT")}


def java_properties(auth: KafkaLogin | None = None) -> dict[str, str]:
    """The same for Kafka's Java clients (the CLI tools' ``--command-config``; prefix ``kafka.`` for Spark's
    Kafka source and sink: :func:`spark_options`)."""
    auth = auth or login()
    ca = _tls_ca()
    props = _protocol(auth, ca)
    if auth is not None:
        props.update({"sasl.mechanism": MECHANISM, "sasl.jaas.config": auth.jaas})
    if ca:
        props.update({"ssl.truststore.type": "PEM", "ssl.truststore.certificates": ca,
                      "ssl.endpoint.identification.algorithm": "https"})
    return props


def spark_options(auth: KafkaLogin | None = None) -> dict[str, str]:
    """Options of Spark's Kafka source and sink that log in (Spark redacts values naming a password)."""
    return {f"kafka.{k}": v for k, v in java_properties(auth).items()}


def properties_text(props: dict[str, str]) -> str:
    """``props`` as a Java ``.properties`` file (backslashes and line breaks escaped: the PEM of the CA)."""
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")

    return "".join(f"{key}={escape(value)}\n" for key, value in props.items())


def main() -> None:
    """``python -m hft.kafka_conn`` (infra/kafka/bin/kafka): the stack's bootstrap servers on the first line (the
    hosts file's, else 127.0.0.1 and ``HFT_KAFKA_PORT``), then the Java clients' login (:func:`java_properties`;
    nothing without one). Holds the password: the caller writes it to a 0600 file."""
    import sys

    from hft.errors import HftError
    from hft.stack.config import StackConfig

    try:
        sys.stdout.write(StackConfig.from_env().kafka_bootstrap + "\n" + properties_text(java_properties()))
    except HftError as e:
        sys.exit(f"hft: {e}")


if __name__ == "__main__":
    main()
