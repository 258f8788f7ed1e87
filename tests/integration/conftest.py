"""The operators' stack for the UI and REST tests: MLflow and Airflow (API server, scheduler, DAG processor)
started by ``hft.stack.up`` on free loopback ports under a temporary HFT_HOME, once per test session, on the
production backend: both keep their state in the stack's PostgreSQL (``HFT_METADATA_DB=postgres``)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
from dag_runs import run_once

from hft.stack import StackConfig
from ports import make_stack_config, postgres_data_dir

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
    pg_data = postgres_data_dir()
    config = make_stack_config(base, metadata_db="postgres", postgres_data=pg_data)
    env = {"HFT_HOME": str(base), "HFT_LAKE_ROOT": str(base / "lake"), "HFT_TICKERS": "AAA,BBB",
           "MLFLOW_TRACKING_URI": config.mlflow_uri, "HFT_AIRFLOW_PARALLELISM": "2", "HFT_METADATA_DB": "postgres",
           "HFT_POSTGRES_PORT": str(config.postgres_port), "HFT_POSTGRES_DATA": str(pg_data), **MODEL_ENV}
    clear = ("HFT_AIRFLOW_ADMIN_PASSWORD", "HFT_AIRFLOW_DB_URL", "HFT_MLFLOW_DB_URL", "HFT_POSTGRES_PASSWORD",
             "AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER")
    try:
        with mock.patch.dict(os.environ, env):
            for key in clear:
                os.environ.pop(key, None)
            up(config, ["mlflow", "airflow"])
            user, password = admin_credentials(config)
        yield OpsStack(config, env, user, password)
    finally:
        down(config)
        shutil.rmtree(pg_data.parent, ignore_errors=True)


@pytest.fixture
def ops_login(ops_stack, monkeypatch):
    """This process logs in to the ops stack's MLflow server as hft's processes do: from the secret under its
    HFT_HOME (hft.model.registry.log_in); the login it leaves in the environment is removed after."""
    monkeypatch.setenv("HFT_HOME", str(ops_stack.config.home))
    yield
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        os.environ.pop(name, None)


def write_features(lake: Path) -> None:
    """Four weeks of synthetic features for AAA and BBB in the lake (what market_data would have built)."""
    from datetime import datetime, timezone

    import pyarrow as pa
    import pyarrow.parquet as pq

    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.reference import compute_features

    bars = SyntheticSource().fetch(["AAA", "BBB"], datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 26, tzinfo=timezone.utc), "1m")
    features = compute_features(bars).assign(date=lambda f: f["date"].astype(str))
    pq.write_to_dataset(pa.Table.from_pandas(features, preserve_index=False), str(lake / "features"),
                        partition_cols=["interval", "ticker", "date"])


@pytest.fixture(scope="session")
def training_run(ops_stack) -> str:
    """A model_training run triggered through the REST API on the ops stack, finished; its run id."""
    write_features(ops_stack.lake)
    run_once(ops_stack.client(), "model_training", "2024-01-26T23:00:00Z", "rest-training")
    return "rest-training"
