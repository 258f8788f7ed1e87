"""The operators' stack for the UI and REST tests: MLflow and Airflow (API server, scheduler, DAG processor)
started by ``hft.stack.up`` on free loopback ports under a temporary HFT_HOME, once per test session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest

from hft.stack import StackConfig
from ports import make_stack_config

#: Small, fast models for the DAG runs (the pipeline, not the model, is under test here).
MODEL_ENV = {"HFT_MODEL_EPOCHS": "2", "HFT_MODEL_FOLDS": "2", "HFT_MODEL_BOOTSTRAP": "50",
             "HFT_MODEL_WIDTHS": "8,16,32,64"}


@dataclass
class OpsStack:
    config: StackConfig
    env: dict[str, str]  # what the stack's processes (and so the DAG tasks) were started with
    user: str
    password: str

    @property
    def lake(self) -> Path:
        return Path(self.env["HFT_LAKE_ROOT"])

    def client(self):
        from hft.stack.airflow_rest import AirflowClient

        return AirflowClient(self.config.airflow_url, self.user, self.password)


@pytest.fixture(scope="session")
def ops_stack(tmp_path_factory):
    from hft.stack import admin_credentials, down, up

    base = tmp_path_factory.mktemp("ops")
    config = make_stack_config(base)
    env = {"HFT_HOME": str(base), "HFT_LAKE_ROOT": str(base / "lake"), "HFT_TICKERS": "AAA,BBB",
           "MLFLOW_TRACKING_URI": config.mlflow_uri, "HFT_AIRFLOW_PARALLELISM": "2", **MODEL_ENV}
    clear = ("HFT_AIRFLOW_ADMIN_PASSWORD", "HFT_AIRFLOW_DB_URL", "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER")
    try:
        with mock.patch.dict(os.environ, env):
            for key in clear:
                os.environ.pop(key, None)
            up(config, ["mlflow", "airflow"])
            user, password = admin_credentials(config)
        yield OpsStack(config, env, user, password)
    finally:
        down(config)
