"""MLflow 3 tracking and registry for the direction model, and the promotion gate.

* Every training run logs its parameters, per-fold metrics, holdout metrics with confidence intervals,
  and artifacts: ``model_weights.h5``, ``features.json``, ``scaler.json``, ``evaluation.json``/``.txt``,
  ``calibration.png``, ``holdout.parquet`` (features, labels, model probabilities), ``understanding.json`` and
  ``importance.png`` (permutation importance, drift: :mod:`hft.model.understanding`), ``economics.json``/
  ``.txt``/``.png`` (the holdout traded after costs: :mod:`hft.model.economics`), and the Keras model
  (``mlflow.keras`` flavour as ``keras_model``), and the registered ``model``: a pyfunc over the weights
  (:mod:`hft.model.serving`, signature and input example) that ``mlflow models serve`` answers with.
* Only when all of that is logged is a version of the registered model ``hft-direction`` created and given
  the alias ``challenger``. A failure before that leaves no version behind (the run is marked FAILED).
* The gate (:func:`gate`) decides whether a version may become ``champion``. With no champion yet, it must
  beat the naive baselines (majority class, sign of last return: 95% CI of the AUC difference above zero)
  and must not be significantly worse than logistic regression. After that, the 95% interval of the paired
  bootstrap of its AUC minus the champion's, on the *same* holdout rows (resampled in blocks of wall-clock
  time: :mod:`hft.model.evaluation`), must lie above ``margin`` (its lower end > margin), and it must still
  beat the naive baselines. Aliases, never the deprecated stages.
* Promotions are recorded on the registered model (tag ``champion_history``), so ``rollback`` returns to the
  previous champion. Every operation is idempotent: re-running it changes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hft.errors import HftError

log = logging.getLogger(__name__)

MODEL_NAME = "hft-direction"
EXPERIMENT = "hft-direction"
CHAMPION, CHALLENGER = "champion", "challenger"
NAIVE_BASELINES = ("majority_class", "last_return_sign")
STRONG_BASELINES = ("logistic_regression",)


class RegistryError(HftError, RuntimeError):
    """The tracking server or registry cannot do what was asked; the message says why."""


class NoChampionError(HftError, RuntimeError):
    """The registry has no ``champion`` version (to serve, or to warm-start from)."""


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI``, else the store the stack's MLflow server uses (SQLite in HFT_HOME, or PostgreSQL
    with ``HFT_METADATA_DB=postgres``: :func:`hft.stack.postgres.metadata_url`), so the CLI and the UI agree."""
    from hft.stack import StackConfig
    from hft.stack.postgres import metadata_url

    return os.environ.get("MLFLOW_TRACKING_URI") or metadata_url(StackConfig.from_env(), "mlflow")


def artifact_root(tracking_uri: str) -> str | None:
    if tracking_uri.startswith("sqlite:///"):
        return str(Path(tracking_uri[len("sqlite:///"):]).parent / "mlartifacts")
    if tracking_uri.startswith("postgresql"):
        from hft.config import Settings

        return str(Settings.from_env().home / "mlartifacts")  # where the stack's server keeps them
    return None  # a server decides


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with a clear message when the tracking store cannot be used."""
    if tracking_uri.startswith(("http://", "https://")):
        import requests

        from hft import tls

        if tracking_uri.startswith("https://") and tls.enabled():  # the stack's server: its CA, for MLflow too
            os.environ.setdefault("MLFLOW_TRACKING_SERVER_CERT_PATH", str(tls.ca_file()))
        verify = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
        try:
            requests.get(tracking_uri.rstrip("/") + "/health", timeout=timeout_s, verify=verify).raise_for_status()
        except requests.RequestException as exc:
            raise RegistryError(f"MLflow tracking server {tracking_uri} is unreachable: {exc.__class__.__name__}") from None
    elif tracking_uri.startswith("sqlite:///"):
        folder = Path(tracking_uri[len("sqlite:///"):]).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RegistryError(f"cannot create the MLflow store folder {folder}: {exc}") from None
        if not os.access(folder, os.W_OK):
            raise RegistryError(f"MLflow store folder {folder} is not writable")
    elif tracking_uri.startswith("postgresql"):
        import sqlalchemy as sa

        engine = sa.create_engine(tracking_uri, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": int(timeout_s)})
        try:
            with engine.connect():
                pass
        except sa.exc.SQLAlchemyError as exc:
            where = tracking_uri.rsplit("@", 1)[-1]
            raise RegistryError(f"MLflow store PostgreSQL at {where} is unreachable ({exc.__class__.__name__}); "
                                "start it with `HFT_METADATA_DB=postgres hft stack up`") from None
        finally:
            engine.dispose()


def log_in(tracking_uri: str) -> None:
    """MLflow's client logs in with ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` from the
    environment: for a tracking server (``http(s)://``) when they are unset, the stack server's admin, its password
    ``HFT_MLFLOW_PASSWORD`` or the one generated under ``HFT_HOME`` (when neither exists, nothing: a server of
    your own without a login). A database URI needs none."""
    from hft.config import stack_secret
    from hft.stack.config import MLFLOW_PASSWORD_ENV, MLFLOW_SECRET, MLFLOW_USER

    if not tracking_uri.startswith(("http://", "https://")) or os.environ.get("MLFLOW_TRACKING_USERNAME"):
        return
    password = stack_secret(MLFLOW_SECRET, MLFLOW_PASSWORD_ENV)
    if password:
        os.environ.update({"MLFLOW_TRACKING_USERNAME": MLFLOW_USER, "MLFLOW_TRACKING_PASSWORD": password})


def client(tracking_uri: str | None = None):
    import mlflow
    from mlflow import MlflowClient

    uri = tracking_uri or default_tracking_uri()
    check_reachable(uri)
    log_in(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(c, tracking_uri: str) -> str:
    exp = c.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    return c.create_experiment(EXPERIMENT, artifact_location=artifact_root(tracking_uri))


@dataclass(frozen=True)
class Registered:
    run_id: str
    version: str


def log_training(result, data: dict, tracking_uri: str | None = None) -> Registered:
    """Log a :class:`hft.model.training.TrainResult` as one MLflow run, then register it as challenger."""
    import mlflow
    import mlflow.keras
    from mlflow.models import infer_signature

    from hft.model.evaluation import plot_calibration
    from hft.model.network import save_weights_file
    from hft.model.training import model_inputs
    from hft.model.understanding import plot_importance, understanding_metrics

    uri = tracking_uri or default_tracking_uri()
    c = client(uri)
    experiment_id = _experiment_id(c, uri)
    ev = result.evaluation
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({**result.config.to_params(), **{k: str(v) for k, v in data.items()},
                           "n_features": str(len(result.features)), "final_epochs": str(result.epochs),
                           "train_rows": str(result.train_rows), "holdout_rows": str(ev.n),
                           "label_horizon_minutes": str(result.horizon_minutes)})
        for fold in result.folds:
            mlflow.log_metrics({f"fold_{k}": float(v) for k, v in fold.items() if k != "fold"}, step=fold["fold"])
        mlflow.log_metrics({k: float(v) for k, v in ev.flat_metrics().items() if np.isfinite(v)})
        mlflow.log_metric("beats_all_baselines", float(ev.beats_all_baselines))
        mlflow.log_metrics(understanding_metrics(result))
        if result.economics is not None:
            mlflow.log_metrics(result.economics.metrics())
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "artifacts"
            out.mkdir()
            weights = out / "model_weights.h5"
            save_weights_file(weights, result.model, result.config, result.features, result.scaler)
            (out / "features.json").write_text(json.dumps(result.features, indent=1))
            (out / "scaler.json").write_text(json.dumps({"mean": result.scaler.mean.tolist(), "scale": result.scaler.scale.tolist()}))
            (out / "evaluation.json").write_text(json.dumps(ev.to_dict(), indent=1, default=float))
            (out / "evaluation.txt").write_text(ev.table() + "\n")
            plot_calibration(out / "calibration.png", {"model": ev.calibration}, "holdout calibration")
            if result.drift is not None:
                (out / "understanding.json").write_text(json.dumps(
                    {"permutation_importance": result.importance, "drift": result.drift.to_dict()}, indent=1, default=float))
                plot_importance(out / "importance.png", result.importance)
            if result.economics is not None:  # the holdout traded after costs (hft.model.economics)
                (out / "economics.json").write_text(json.dumps(result.economics.to_dict(), indent=1, default=float))
                (out / "economics.txt").write_text(result.economics.verdict() + "\n\n" + result.economics.table() + "\n")
                result.economics.plot(out / "economics.png")
            hold = result.holdout[["ticker", "ts", "date", *result.features, "label"]].copy()
            hold["date"] = hold["date"].astype(str)
            hold.assign(model_proba=result.holdout_proba).to_parquet(out / "holdout.parquet", index=False)
            mlflow.log_artifacts(str(out))
            x, _ = model_inputs(result.holdout.head(64), result.features, result.config, result.scaler)
            sample = x[:5]
            signature = infer_signature(sample, np.asarray(result.model(sample, training=False)))
            # mlflow.keras.log_model(input_example=...) writes the example before creating its folder
            # (MLflow 3.17); saving into an existing empty folder and logging it avoids that bug.
            local = Path(tmp) / "keras_model"
            local.mkdir()
            mlflow.keras.save_model(result.model, str(local), signature=signature, input_example=sample)
            mlflow.log_artifacts(str(local), "keras_model")
            _log_pyfunc(Path(tmp) / "model", result, weights)
        model_uri = f"runs:/{run.info.run_id}/model"
        try:
            version = mlflow.register_model(model_uri, MODEL_NAME, tags={"run_id": run.info.run_id}).version
        except Exception as exc:  # noqa: BLE001 - any registry failure ends the run as FAILED, nothing half-made
            raise RegistryError(f"registering {MODEL_NAME} failed: {exc}") from exc
        try:
            c.set_model_version_tag(MODEL_NAME, version, "holdout_auc", f"{ev.scores['model']['auc'].value:.6f}")
            c.set_model_version_tag(MODEL_NAME, version, "beats_all_baselines", str(ev.beats_all_baselines))
            c.set_registered_model_alias(MODEL_NAME, CHALLENGER, version)
        except Exception as exc:  # noqa: BLE001 - undo the half-made version, then report
            c.delete_model_version(MODEL_NAME, version)
            raise RegistryError(f"finishing {MODEL_NAME} version {version} failed, version removed: {exc}") from exc
    log.info("registered %s version %s (run %s) as %s", MODEL_NAME, version, run.info.run_id, CHALLENGER,
             extra={"hft": {"model_version": version, "run_id": run.info.run_id}})
    return Registered(run.info.run_id, str(version))


def _log_pyfunc(local: Path, result, weights: Path) -> None:
    """The registered ``model``: :class:`hft.model.serving.DirectionModel` over the run's ``weights`` file,
    with a signature and an input example of raw feature rows (what ``mlflow models serve`` answers); saved
    into the new folder ``local``, then logged."""
    import mlflow
    from mlflow.models import infer_signature

    from hft.model.fast import FastPredictor
    from hft.model.serving import DirectionModel, request_frame, score

    predictor = FastPredictor.from_weights_file(weights)
    rows = 5 if result.config.architecture == "mlp" else result.config.lookback + 4
    example = request_frame(result.holdout.head(rows), predictor)
    signature = infer_signature(example, pd.DataFrame({"probability": score(predictor, example)}))
    mlflow.pyfunc.save_model(str(local), python_model=DirectionModel(), artifacts={"weights": str(weights)},
                             signature=signature, input_example=example)
    mlflow.log_artifacts(str(local), "model")


def alias_version(c, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(c.get_model_version_by_alias(MODEL_NAME, alias).version)
    except MlflowException:
        return None


def weights_path(c, version: str, dst: str | None = None) -> Path:
    """Download a version's ``model_weights.h5`` (from its training run) and return the local path."""
    import mlflow

    mv = c.get_model_version(MODEL_NAME, version)
    run_id = mv.run_id or (mv.tags or {}).get("run_id")
    return Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_weights.h5", dst_path=dst))


def run_metrics(c, version: str) -> dict[str, float]:
    """The metrics of the training run behind ``version`` (name -> last value)."""
    mv = c.get_model_version(MODEL_NAME, version)
    return dict(c.get_run(mv.run_id or (mv.tags or {}).get("run_id")).data.metrics)


def holdout_of(c, version: str) -> pd.DataFrame:
    import mlflow

    mv = c.get_model_version(MODEL_NAME, version)
    path = mlflow.artifacts.download_artifacts(run_id=mv.run_id, artifact_path="holdout.parquet")
    return pd.read_parquet(path)


def block_minutes_of(c, version: str) -> int:
    """The bootstrap block length ``version`` was evaluated with (its run's ``bootstrap_block_minutes``
    parameter; the default for runs logged before there was one)."""
    from hft.model.config import ModelConfig

    params = c.get_run(c.get_model_version(MODEL_NAME, version).run_id).data.params
    return int(params.get("bootstrap_block_minutes", ModelConfig().bootstrap_block_minutes))


def evaluation_of(c, version: str) -> dict:
    import mlflow

    mv = c.get_model_version(MODEL_NAME, version)
    return json.loads(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/evaluation.json"))


@dataclass(frozen=True)
class GateDecision:
    version: str
    promote: bool
    reason: str
    champion: str | None


def _naive_failures(evaluation: dict) -> list[str]:
    comps = {x["baseline"]: x for x in evaluation["comparisons"]}
    return [b for b in NAIVE_BASELINES if not comps.get(b, {}).get("beats")]


def first_model_verdict(evaluation: dict) -> tuple[bool, str]:
    """With no champion yet: beat the naive baselines, and be no significantly worse than the strong ones."""
    comps = {x["baseline"]: x for x in evaluation["comparisons"]}
    failed = _naive_failures(evaluation)
    worse = [b for b in STRONG_BASELINES if b in comps and comps[b]["auc_diff"]["high"] < 0]
    if failed or worse:
        why = "; ".join([f"does not beat {b}" for b in failed] + [f"significantly worse than {b}" for b in worse])
        return False, f"first model rejected: {why}"
    return True, "first model: beats the naive baselines and is not significantly worse than logistic regression"


def challenger_verdict(y: np.ndarray, challenger: np.ndarray, champion: np.ndarray, evaluation: dict,
                       margin: float, champion_version: str, resamples: int = 1000, seed: int = 0,
                       groups: np.ndarray | None = None) -> tuple[bool, str]:
    """Against a champion: the paired bootstrap interval of (challenger AUC - champion AUC) on the same rows
    ``y`` (resampled in ``groups``' blocks, see :func:`hft.model.evaluation.blocks`) must lie above ``margin``,
    and the challenger's ``evaluation`` must beat the naive baselines."""
    from hft.model.evaluation import auc, paired_auc_difference

    d = paired_auc_difference(y, challenger, champion, resamples, seed, groups)
    above = d.low > margin
    failed = _naive_failures(evaluation)
    reason = (f"challenger AUC {auc(y, challenger):.4f} vs champion v{champion_version} AUC {auc(y, champion):.4f} "
              f"on the same {len(y)} holdout rows: difference {d.value:+.4f}, 95% paired bootstrap interval "
              f"[{d.low:+.4f}, {d.high:+.4f}] {'above' if above else 'not above'} the margin {margin:.4f}")
    if failed:
        reason += f"; does not beat {', '.join(failed)}"
    return bool(above) and not failed, reason


def gate(version: str, margin: float = 0.0, tracking_uri: str | None = None, resamples: int = 1000) -> GateDecision:
    """Decide whether ``version`` may become champion (see the module docstring)."""
    from hft.model.evaluation import blocks
    from hft.model.fast import FastPredictor
    from hft.model.training import model_inputs

    c = client(tracking_uri)
    current = alias_version(c, CHAMPION)
    if current == str(version):
        return GateDecision(str(version), False, f"version {version} is already champion", current)
    evaluation = evaluation_of(c, version)
    if current is None:
        ok, why = first_model_verdict(evaluation)
        return GateDecision(str(version), ok, why, None)
    hold = holdout_of(c, version)
    with tempfile.TemporaryDirectory() as tmp:
        champ = FastPredictor.from_weights_file(weights_path(c, current, tmp))
    missing = [f for f in champ.features if f not in hold.columns]
    if missing:
        return GateDecision(str(version), False, f"champion needs features the holdout lacks: {missing}", current)
    hold["date"] = hold["date"].astype(str)
    x, rows = model_inputs(hold, champ.features, champ.config, scaler=None)  # the champion's own input shape
    y = hold["label"].to_numpy()[rows]
    groups = blocks(hold["ts"].to_numpy()[rows], block_minutes_of(c, version))
    ok, reason = challenger_verdict(y, hold["model_proba"].to_numpy()[rows], champ.predict_proba(x), evaluation,
                                    margin, current, resamples, groups=groups)
    return GateDecision(str(version), ok, reason, current)


def promote(version: str, reason: str = "manual", tracking_uri: str | None = None, by: str = "hft") -> bool:
    """Point ``champion`` at ``version`` and record it (who: ``by``; the version's gate verdict). Returns False
    when it already was."""
    c = client(tracking_uri)
    mv = c.get_model_version(MODEL_NAME, version)  # raises for an unknown version
    current = alias_version(c, CHAMPION)
    if current == str(version):
        return False
    _record(c, str(version), reason, by, (mv.tags or {}).get("gate_verdict", "unknown"))
    c.set_registered_model_alias(MODEL_NAME, CHAMPION, str(version))
    log.info("champion -> version %s (%s)", version, reason, extra={"hft": {"champion": str(version)}})
    from hft.model.report import describe_model

    describe_model(tracking_uri)
    return True


def _record(c, version: str, reason: str, by: str, gate: str) -> dict:
    entry = {"version": version, "at": datetime.now(timezone.utc).isoformat(), "reason": reason, "by": by,
             "gate": gate}
    history = champion_history(c)
    history.append(entry)
    c.set_registered_model_tag(MODEL_NAME, "champion_history", json.dumps(history[-50:]))
    return entry


#: Who moved the alias when it was not hft: the MLflow UI or API, past the gate.
OUTSIDE = "outside hft (alias set in the MLflow UI or API)"


def audit_champion(tracking_uri: str | None = None) -> dict | None:
    """Detect a ``champion`` alias moved past hft (by hand in the MLflow UI, or by the API) and record it.

    The last entry of ``champion_history`` is the version hft made champion; when the alias points elsewhere,
    an entry ``by`` :data:`OUTSIDE` with that version's gate verdict (``approved``, ``rejected`` or
    ``unknown``) is appended and logged as a warning. Returns that entry, or None when nothing moved.
    Idempotent: a move is recorded once.
    """
    c = client(tracking_uri)
    current = alias_version(c, CHAMPION)
    history = champion_history(c)
    if current is None or (history and history[-1]["version"] == current):
        return None
    gate = (c.get_model_version(MODEL_NAME, current).tags or {}).get("gate_verdict", "unknown")
    entry = _record(c, current, "champion alias moved without the gate", OUTSIDE, gate)
    log.warning("champion alias moved outside hft to version %s (gate verdict: %s)", current, gate,
                extra={"hft": {"event": "champion_moved_outside", "champion": current, "gate": gate}})
    from hft.model.report import describe_model

    describe_model(tracking_uri)
    return entry


def champion_history(c) -> list[dict]:
    """The promotions recorded on the registered model (tag ``champion_history``), oldest first."""
    from mlflow.exceptions import MlflowException

    try:
        rm = c.get_registered_model(MODEL_NAME)
    except MlflowException:
        return []
    return json.loads((rm.tags or {}).get("champion_history", "[]"))


def rollback(tracking_uri: str | None = None) -> str:
    """Move ``champion`` back to the previous champion; returns the version now champion."""
    c = client(tracking_uri)
    current = alias_version(c, CHAMPION)
    previous = [h["version"] for h in champion_history(c) if h["version"] != current]
    if current is None or not previous:
        raise RegistryError("nothing to roll back to: no earlier champion recorded")
    target = previous[-1]
    promote(target, reason=f"rollback from {current}", tracking_uri=tracking_uri, by="hft model rollback")
    return target


def list_versions(tracking_uri: str | None = None) -> list[dict]:
    """Every version with its aliases, holdout AUC and run id, newest first."""
    from mlflow.exceptions import MlflowException

    c = client(tracking_uri)
    try:
        versions = c.search_model_versions(f"name='{MODEL_NAME}'")
        aliases = c.get_registered_model(MODEL_NAME).aliases or {}
    except MlflowException:
        return []
    by_version: dict[str, list[str]] = {}
    for alias, v in sorted(aliases.items()):
        by_version.setdefault(str(v), []).append(alias)
    out = []
    for mv in sorted(versions, key=lambda v: int(v.version), reverse=True):
        out.append({
            "version": str(mv.version),
            "aliases": by_version.get(str(mv.version), []),
            "holdout_auc": (mv.tags or {}).get("holdout_auc"),
            "beats_all_baselines": (mv.tags or {}).get("beats_all_baselines"),
            "run_id": mv.run_id,
            "created": datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).isoformat(timespec="seconds"),
        })
    return out
