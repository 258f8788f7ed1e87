"""Where MLflow and Airflow keep their state, and when the stack starts PostgreSQL for them (nothing started)."""

from __future__ import annotations

import stat

import pytest

from hft.stack import AIRFLOW_SERVICES, StackConfig, StackError, with_dependencies
from hft.stack.postgres import database_url, metadata_url, password


def _config(tmp_path, **options) -> StackConfig:
    return StackConfig(run_dir=tmp_path / "run", kafka_port=1, kafka_controller_port=2, redis_port=3,
                       mlflow_port=4, airflow_port=5, postgres_port=6, home=tmp_path, **options)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for key in ("HFT_POSTGRES_PASSWORD", "HFT_MLFLOW_DB_URL", "HFT_AIRFLOW_DB_URL", "HFT_METADATA_DB",
                "HFT_POSTGRES_DATA", "HFT_POSTGRES_PORT"):
        monkeypatch.delenv(key, raising=False)


def test_the_embedded_default_is_sqlite_in_hft_home(tmp_path):
    cfg = _config(tmp_path)
    assert metadata_url(cfg, "mlflow") == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert metadata_url(cfg, "airflow") == f"sqlite:///{tmp_path / 'airflow' / 'airflow.db'}"
    assert cfg.postgres_data == tmp_path / "run" / "postgres"
    assert with_dependencies(cfg, ["mlflow", "airflow"]) == ("mlflow", *AIRFLOW_SERVICES)


def test_postgres_backend_gives_each_app_its_database_with_a_private_generated_password(tmp_path):
    cfg = _config(tmp_path, metadata_db="postgres")
    secret = password(cfg)
    assert len(secret) >= 24 and password(cfg) == secret  # generated once
    assert stat.S_IMODE((tmp_path / "secrets" / "postgres-password").stat().st_mode) == 0o600
    assert metadata_url(cfg, "airflow") == f"postgresql+psycopg2://hft:{secret}@127.0.0.1:6/airflow"
    assert metadata_url(cfg, "mlflow").endswith("@127.0.0.1:6/mlflow")
    # PostgreSQL starts first, and only for its clients.
    assert with_dependencies(cfg, ["all"])[0] == "postgres"
    assert with_dependencies(cfg, ["airflow-scheduler"]) == ("postgres", "airflow-scheduler")
    assert with_dependencies(cfg, ["kafka", "redis"]) == ("kafka", "redis")


def test_passwords_and_explicit_urls_from_the_environment_win(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_POSTGRES_PASSWORD", "p@ss/word:with#odd")
    cfg = _config(tmp_path, metadata_db="postgres")
    assert database_url(cfg, "mlflow") == "postgresql+psycopg2://hft:p%40ss%2Fword%3Awith%23odd@127.0.0.1:6/mlflow"
    assert not (tmp_path / "secrets").exists()
    monkeypatch.setenv("HFT_MLFLOW_DB_URL", "postgresql://ml:pw@db.internal:5432/mlflow")
    assert metadata_url(cfg, "mlflow") == "postgresql://ml:pw@db.internal:5432/mlflow"


def test_config_from_env_and_bad_backends(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    monkeypatch.setenv("HFT_METADATA_DB", "Postgres")
    monkeypatch.setenv("HFT_POSTGRES_DATA", str(tmp_path / "pg"))
    cfg = StackConfig.from_env()
    assert (cfg.metadata_db, cfg.postgres_port, cfg.postgres_data) == ("postgres", 5433, tmp_path / "pg")
    monkeypatch.setenv("HFT_METADATA_DB", "mysql")
    with pytest.raises(StackError, match="HFT_METADATA_DB='mysql': pick one of sqlite, postgres"):
        StackConfig.from_env()
    with pytest.raises(StackError, match="no metadata database"):
        metadata_url(_config(tmp_path), "kafka")
