"""market_data: ingest one session of bars, validate it into the lake, compute its features with Spark.

    ingest (source -> staging parquet) -> validate (GX: lake or quarantine) -> features (spark-submit)

A run's params (the Trigger form in the UI, ``conf`` in the REST API) override the source and the tickers
for that run. A failed task (after its retries) logs an error and counts in
``hft_airflow_task_failures_total`` (:mod:`hft.observability.dag_failures`).

Runs once per weekday for the session of its logical date (``ds``, a New York date). Every step is
idempotent for its interval: re-running a date merges the same bars and overwrites that date's feature
partitions. Tasks pass only paths and dates through XCom.

The ingest fetches the tickers' market context too: the index ETF (``HFT_MARKET_TICKER``, SPY) and the
sector ETFs of ``HFT_SECTORS`` (:meth:`hft.features.definitions.FeatureSpec.from_env`), whose bars the
``mkt_*`` and ``sec_*`` features read.

Configuration (environment): ``HFT_LAKE_ROOT`` (lake), ``HFT_TICKERS``, ``HFT_INTERVAL``,
``HFT_DAG_SOURCE`` (``synthetic`` by default, or ``yfinance``), and the Airflow connection
``spark_default`` whose host is the Spark master, e.g.
``AIRFLOW_CONN_SPARK_DEFAULT='{"conn_type": "spark", "host": "local[*]"}'``.
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import Param, dag, task

from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV, Settings  # light: no heavy imports at parse time
from hft.observability.dag_failures import on_task_failure

SOURCES = ["synthetic", "yfinance"]

JOBS = Path(__file__).resolve().parents[1] / "jobs"


@dag(
    dag_id="market_data",
    schedule="0 22 * * 1-5",
    start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "retry_exponential_backoff": True,
                  "on_failure_callback": on_task_failure},
    params={
        "source": Param(os.environ.get("HFT_DAG_SOURCE", "synthetic"), type="string", enum=SOURCES,
                        description="where the bars come from"),
        "tickers": Param(None, type=["null", "string"], description="comma-separated tickers; empty: HFT_TICKERS"),
    },
    tags=["hft", "data", "spark"],
    doc_md=__doc__,
)
def market_data():
    @task
    def ingest(ds: str | None = None, params: dict | None = None) -> str | None:
        from datetime import date

        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from hft.config import parse_tickers
        from hft.data.ingest import stage_session
        from hft.features.definitions import FeatureSpec

        settings = Settings.from_env()
        params = params or {}
        try:  # a bad parameter does not get better by retrying
            tickers = parse_tickers(params["tickers"], "param tickers") if params.get("tickers") else settings.tickers
            # and the index's and sector ETFs' bars, which their market context features read
            tickers = FeatureSpec.from_env().with_context(tickers)
        except ValueError as e:
            raise AirflowFailException(str(e)) from None
        source = params.get("source") or os.environ.get("HFT_DAG_SOURCE", "synthetic")
        uri = stage_session(source, tickers, date.fromisoformat(ds), settings.interval, settings.lake_root)
        if uri is None:
            raise AirflowSkipException(f"{ds} is not a trading day")
        return uri

    @task(retries=0)
    def validate(staging_uri: str) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from hft.data.ingest import store_staged

        settings = Settings.from_env()
        result = store_staged(staging_uri, settings.lake_root, settings.max_gap_minutes)
        if not result.ok:  # good tickers are stored; the run still fails loudly (retrying cannot fix data)
            raise AirflowFailException(result.report.summary())
        return result.as_counts()

    settings = Settings.from_env()
    lake = settings.lake_root
    features = SparkSubmitOperator(
        task_id="features",
        conn_id="spark_default",
        application=str(JOBS / "volatility_features.py"),
        application_args=[
            "--input", f"{lake}/bars", "--output", f"{lake}/features",
            "--interval", settings.interval, "--start", "{{ ds }}", "--end", "{{ ds }}",
        ],
        conf={**SPARK_LOCAL_CONF, "spark.pyspark.python": sys.executable, "spark.sql.session.timeZone": "UTC"},
        env_vars={**SPARK_LOCAL_ENV, "PYSPARK_PYTHON": sys.executable},
        name="hft-volatility-features-{{ ds }}",
    )

    validate(ingest()) >> features


market_data()
