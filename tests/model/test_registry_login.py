"""hft's MLflow client logs in to a tracking server by itself (hft.model.registry.log_in)."""

from __future__ import annotations

import os

import pytest

from hft.model.registry import log_in


@pytest.fixture
def clean(tmp_path, monkeypatch):
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "HFT_MLFLOW_PASSWORD"):
        monkeypatch.setenv(name, "x")  # recorded, so that the teardown removes what log_in sets
        monkeypatch.delenv(name)
    return tmp_path


def test_a_server_gets_the_stack_admin_from_the_secret_file_then_the_environment(clean, monkeypatch):
    log_in("http://127.0.0.1:5000")
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ  # no secret anywhere: a server of your own, no login
    (clean / "secrets").mkdir()
    (clean / "secrets" / "mlflow-password").write_text("from-the-file\n")
    log_in("sqlite:///x.db")  # a database needs no login
    assert "MLFLOW_TRACKING_USERNAME" not in os.environ
    log_in("http://127.0.0.1:5000")
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("admin", "from-the-file")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.setenv("HFT_MLFLOW_PASSWORD", "from-the-env")
    log_in("https://mlflow.example")
    assert os.environ["MLFLOW_TRACKING_PASSWORD"] == "from-the-env"


def test_a_login_already_given_is_kept(clean, monkeypatch):
    (clean / "secrets").mkdir()
    (clean / "secrets" / "mlflow-password").write_text("stack\n")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "alice")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "hers")
    log_in("http://127.0.0.1:5000")
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == ("alice", "hers")
