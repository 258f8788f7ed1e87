"""How Kafka clients log in (hft.kafka_conn): the stack user's password from the environment or HFT_HOME."""

from __future__ import annotations

import pytest

from hft.kafka_conn import MECHANISM, PASSWORD_ENV, KafkaLogin, client_config, java_properties, login, spark_options


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    return tmp_path


def test_no_password_anywhere_means_no_sasl(home):
    assert login() is None
    assert client_config("h:1", {"acks": "all"}) == {"bootstrap.servers": "h:1", "acks": "all"}
    assert java_properties() == {} and spark_options() == {}


def test_the_file_under_hft_home_then_the_environment(home, monkeypatch):
    (home / "secrets").mkdir()
    (home / "secrets" / "kafka-password").write_text("from-the-file-123\n")
    assert login() == KafkaLogin("hft", "from-the-file-123")
    assert "from-the-file" not in repr(login())
    conf = client_config("h:1", {"group.id": "g"})
    assert conf == {"bootstrap.servers": "h:1", "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": MECHANISM,
                    "sasl.username": "hft", "sasl.password": "from-the-file-123", "group.id": "g"}
    assert spark_options()["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="hft" password="from-the-file-123";')
    monkeypatch.setenv(PASSWORD_ENV, "from-the-env-456")  # the environment wins, as for the broker
    assert login().password == "from-the-env-456"
    other = KafkaLogin("hft", "given")  # a login found elsewhere (a Spark task gets the driver's)
    assert client_config("h:1", auth=other)["sasl.password"] == "given"
