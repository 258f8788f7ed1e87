"""model_training: features ready -> train (MLflow run, registered as challenger) -> evaluate -> gate -> promote.

Weekly after the close (Friday 23:00 UTC), on the whole feature table the ``market_data`` DAG maintains.
``model_retraining`` (Monday to Thursday, 22:30 UTC) is the daily online-learning step with the same tasks:
its ``train`` warm-starts the champion on the newest sessions (:mod:`hft.model.online`, the last session
held out) instead of training from scratch, and is skipped while there is no champion.
Training is single-process Keras; the registry is MLflow (``MLFLOW_TRACKING_URI``, default sqlite under
``HFT_HOME``). Model settings come from ``HFT_MODEL_<SETTING>`` variables (e.g. ``HFT_MODEL_EPOCHS=10``),
the gate margin from ``HFT_PROMOTION_MARGIN`` (AUC, default 0.001). Tasks pass only the run id and version.
Re-running is safe: a new run registers a new challenger version; the gate and promotion are idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from airflow.sdk import dag, task

from hft.config import Settings  # light: no heavy imports at parse time
from hft.observability.dag_failures import on_task_failure


def model_pipeline(dag_id: str, schedule: str, warm_start: bool):
    """The training DAG: from scratch (``model_training``) or warm-started from the champion (``model_retraining``)."""

    @dag(
        dag_id=dag_id,
        schedule=schedule,
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args={"retries": 1, "retry_delay": timedelta(minutes=5), "on_failure_callback": on_task_failure},
        tags=["hft", "model", "mlflow"] + (["online-learning"] if warm_start else []),
        doc_md=__doc__,
    )
    def pipeline():
        _tasks(warm_start)

    return pipeline()


def _tasks(warm_start: bool) -> None:
    @task(retries=0)
    def features_ready() -> str:
        from hft.config import join_uri
        from hft.model.dataset import load_feature_table, prepare

        settings = Settings.from_env()
        path = join_uri(settings.lake_root, "features")
        frame, _ = prepare(load_feature_table(path, settings.interval))  # fails clearly when unusable
        if frame["date"].nunique() < 5:
            raise ValueError(f"only {frame['date'].nunique()} sessions of features at {path}; need at least 5")
        return path

    @task
    def train(features_path: str) -> dict:
        from hft.model.config import ModelConfig
        from hft.model.pipeline import train_step, warm_start_step
        from hft.model.registry import NoChampionError

        if warm_start:
            from airflow.sdk.exceptions import AirflowSkipException

            try:
                reg, _ = warm_start_step(features_path, interval=Settings.from_env().interval)
            except NoChampionError as exc:
                import logging

                logging.getLogger("hft.dags").info("retraining skipped: %s", exc)
                raise AirflowSkipException(str(exc)) from None
        else:
            reg, _ = train_step(features_path, ModelConfig.from_env(), Settings.from_env().interval)
        return {"run_id": reg.run_id, "version": reg.version}

    @task
    def evaluate(registered: dict) -> dict:
        """Re-score the holdout with the registered weights; the report goes to the run (evaluation_report/)."""
        from hft.model.report import evaluation_report

        report = evaluation_report(registered["version"])
        return {**registered, "beats_all_baselines": report["beats_all_baselines"],
                "evaluated_auc": round(report["overall"]["auc"], 6), "holdout_rows": report["overall"]["rows"],
                "reproduces_training": report["reproduced"]}

    @task
    def gate(evaluated: dict) -> dict:
        """The gate's verdict: in this task's log and XCom, and on the version in MLflow (tags, description)."""
        import logging

        from hft.model.pipeline import judge

        decision = judge(evaluated["version"])
        verdict = "APPROVED" if decision.promote else "REJECTED"
        logging.getLogger("hft.dags").info("gate verdict for version %s: %s - %s", evaluated["version"], verdict,
                                           decision.reason)
        return {**evaluated, "promote": decision.promote, "verdict": verdict.lower(), "reason": decision.reason}

    @task
    def promote(decision: dict) -> str:
        from hft.model import registry

        if not decision["promote"]:
            return f"champion unchanged: {decision['reason']}"
        dag_id = "model_retraining" if warm_start else "model_training"
        registry.promote(decision["version"], reason=decision["reason"], by=f"gate ({dag_id} DAG)")
        return f"champion -> version {decision['version']}"

    promote(gate(evaluate(train(features_ready()))))


model_training = model_pipeline("model_training", "0 23 * * 5", warm_start=False)
model_retraining = model_pipeline("model_retraining", "30 22 * * 1-4", warm_start=True)
