"""The one way settings are read from HFT_* variables (hft.config.settings_from_env)."""

from __future__ import annotations

import pytest

from hft.config import Settings, parse_setting
from hft.execution.config import ExecConfig
from hft.model.config import ModelConfig


def test_settings_from_env_parses_each_field_as_its_default_type(monkeypatch):
    monkeypatch.setenv("HFT_EXEC_MAX_POSITION", "250")
    monkeypatch.setenv("HFT_EXEC_FEE_BPS", "0.75")
    monkeypatch.setenv("HFT_MODEL_WIDTHS", "8,16,32,64")
    monkeypatch.setenv("HFT_MODEL_BATCH_NORM", "yes")
    monkeypatch.setenv("HFT_MODEL_ARCHITECTURE", "conv1d")
    exec_config, model = ExecConfig.from_env(), ModelConfig.from_env()
    assert (exec_config.max_position, exec_config.fee_bps) == (250, 0.75) and type(exec_config.max_position) is int
    assert (model.widths, model.batch_norm, model.architecture) == ((8, 16, 32, 64), True, "conv1d")
    assert ExecConfig.from_env(fee_bps=2.0).fee_bps == 2.0  # explicit overrides win


@pytest.mark.parametrize(("name", "value", "message"), [
    ("HFT_EXEC_MAX_POSITON", "5", "unknown setting.*HFT_EXEC_MAX_POSITON"),  # a typo is not ignored
    ("HFT_EXEC_FEE_BPS", "cheap", "bad value for HFT_EXEC_FEE_BPS: 'cheap'"),
    ("HFT_EXEC_MAX_POSITION", "1.5", "bad value for HFT_EXEC_MAX_POSITION"),
])
def test_settings_from_env_refuses_unknown_names_and_bad_values(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        ExecConfig.from_env()


def test_parse_setting_bool_accepts_only_clear_words():
    assert parse_setting("x", False, "TRUE") is True and parse_setting("x", True, "0") is False
    with pytest.raises(ValueError, match="bad value for x"):
        parse_setting("x", False, "maybe")


def test_promotion_margin_default_lives_in_settings(monkeypatch):
    assert Settings.from_env().promotion_margin == 0.001
    monkeypatch.setenv("HFT_PROMOTION_MARGIN", "0.01")
    assert Settings.from_env().promotion_margin == 0.01


def test_kafka_producers_linger_default_and_env(monkeypatch):
    from hft.streaming.kafka_io import DEFAULT_LINGER_MS, producer, producer_config

    monkeypatch.delenv("HFT_KAFKA_LINGER_MS", raising=False)
    conf = producer_config("127.0.0.1:1", "x")
    assert conf["linger.ms"] == DEFAULT_LINGER_MS == 20
    assert conf["enable.idempotence"] is True and conf["acks"] == "all"
    monkeypatch.setenv("HFT_KAFKA_LINGER_MS", "2")
    assert producer_config("127.0.0.1:1")["linger.ms"] == 2
    assert producer_config("127.0.0.1:1", linger_ms=50)["linger.ms"] == 50
    producer("127.0.0.1:1")  # librdkafka accepts the settings (it connects lazily)
    monkeypatch.setenv("HFT_KAFKA_LINGER_MS", "soon")
    with pytest.raises(ValueError, match="HFT_KAFKA_LINGER_MS"):
        producer_config("127.0.0.1:1")


def test_parse_tickers_normalises_and_refuses_bad_symbols():
    import pytest

    from hft.config import parse_tickers

    assert parse_tickers(" aapl, MSFT ,aapl,brk.b,,") == ("AAPL", "MSFT", "BRK.B")
    for bad in ("AAPL,not a ticker!", "1AB", "TOOLONGTICKER", "AAPL\nX", ",,"):
        with pytest.raises(ValueError, match="invalid ticker|no tickers"):
            parse_tickers(bad)


def test_env_count_reads_a_whole_number_with_a_floor(monkeypatch):
    from hft.config import env_count

    monkeypatch.delenv("HFT_X_COUNT", raising=False)
    assert env_count("HFT_X_COUNT", 4) == 4
    monkeypatch.setenv("HFT_X_COUNT", "7")
    assert env_count("HFT_X_COUNT", 4) == 7
    for bad, why in (("seven", "whole number"), ("0", "at least 1"), ("2.5", "whole number")):
        monkeypatch.setenv("HFT_X_COUNT", bad)
        with pytest.raises(ValueError, match=f"HFT_X_COUNT must be .*{why}"):
            env_count("HFT_X_COUNT", 4)
