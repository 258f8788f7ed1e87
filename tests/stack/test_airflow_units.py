"""Airflow's part of the stack without starting it: settings, secrets, the environment, the groups."""

from __future__ import annotations

import stat

import pytest

from hft.stack import AIRFLOW_SERVICES, ALL_SERVICES, StackConfig, StackError, expand_services
from hft.stack.airflow import AirflowSettings, _redact, admin_credentials, airflow_env, airflow_login
from hft.stack.process import _address


def _config(tmp_path) -> StackConfig:
    return StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3,
                       mlflow_port=4, airflow_port=5, home=tmp_path)


def test_groups_expand_in_order_without_repeats():
    assert expand_services(["airflow"]) == AIRFLOW_SERVICES
    assert expand_services(["all"]) == tuple(n for n in ALL_SERVICES if n != "postgres")
    assert expand_services(["redis", "airflow", "redis", "airflow-api"]) == ("redis", *AIRFLOW_SERVICES)


def test_generated_password_and_secrets_are_private_and_stable(tmp_path, monkeypatch):
    for key in ("HFT_AIRFLOW_ADMIN_PASSWORD", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY",
                "AIRFLOW__CORE__FERNET_KEY"):
        monkeypatch.delenv(key, raising=False)
    cfg = _config(tmp_path)
    user, password = admin_credentials(cfg)
    assert user == "admin" and len(password) >= 20
    assert admin_credentials(cfg) == (user, password)  # generated once
    assert airflow_login(cfg) == ("admin", f"in {cfg.airflow_home / 'admin-password'}")
    env = airflow_env(cfg)
    assert env["AIRFLOW_HOME"] == str(cfg.airflow_home)
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{cfg.airflow_home / 'airflow.db'}"
    assert airflow_env(cfg)["AIRFLOW__API_AUTH__JWT_SECRET"] == env["AIRFLOW__API_AUTH__JWT_SECRET"]
    for secret in ("admin-password", "secrets.json"):
        assert stat.S_IMODE((cfg.airflow_home / secret).stat().st_mode) == 0o600


def test_secrets_and_password_from_the_environment_win(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_AIRFLOW_ADMIN_USER", "ops")
    monkeypatch.setenv("HFT_AIRFLOW_ADMIN_PASSWORD", "s3cret-from-env")
    monkeypatch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "jwt-from-env")
    monkeypatch.setenv("HFT_AIRFLOW_DB_URL", "postgresql+psycopg2://airflow:pw@127.0.0.1:5432/airflow")
    cfg = _config(tmp_path)
    assert admin_credentials(cfg) == ("ops", "s3cret-from-env")
    assert not (cfg.airflow_home / "admin-password").exists()
    assert airflow_login(cfg) == ("ops", "from HFT_AIRFLOW_ADMIN_PASSWORD")
    env = airflow_env(cfg)
    assert env["AIRFLOW__API_AUTH__JWT_SECRET"] == "jwt-from-env"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert _redact(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]) == "postgresql+psycopg2://airflow:***@127.0.0.1:5432/airflow"


@pytest.mark.parametrize("raw", ["0", "-3", "four"])
def test_bad_parallelism_is_refused(tmp_path, monkeypatch, raw):
    monkeypatch.setenv("HFT_AIRFLOW_PARALLELISM", raw)
    with pytest.raises(StackError, match="HFT_AIRFLOW_PARALLELISM"):
        AirflowSettings.from_env(_config(tmp_path))


def test_proc_net_addresses_decode():
    assert _address("0100007F") == "127.0.0.1"
    assert _address("00000000") == "0.0.0.0"
    assert _address("00000000000000000000000001000000") == "::1"
    assert _address("00000000000000000000000000000000") == "::"
    assert _address("0000000000000000FFFF00000100007F") == "127.0.0.1"  # ::ffff:127.0.0.1 (a JVM's socket)
    assert _address("0000000000000000FFFF000000000000") == "0.0.0.0"
