"""Train -> evaluate -> register -> gate -> promote, shared by the CLI, ``jobs/train_model.py`` and the
``model_training`` DAG (which runs the steps as separate tasks passing only ids)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hft.model.config import ModelConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingOutcome:
    run_id: str
    version: str
    evaluation_table: str
    beats_all_baselines: bool
    promoted: bool
    gate_reason: str
    understanding: str = ""  # permutation importance and drift, in words (hft.model.understanding.summary)
    economics: str = ""  # the holdout traded after costs: the verdict and the table (hft.model.economics)


def train_step(
    features_path: str,
    config: ModelConfig = ModelConfig(),
    interval: str = "1m",
    tracking_uri: str | None = None,
    tickers: list[str] | None = None,
):
    """Read the feature table, train with walk-forward validation, log the run and register the model
    as ``challenger``. Returns (:class:`hft.model.registry.Registered`, the
    :class:`hft.model.training.TrainResult`)."""
    from hft.model import registry
    from hft.model.dataset import label_horizon, load_feature_table, prepare
    from hft.model.training import train

    registry.check_reachable(tracking_uri or registry.default_tracking_uri())
    table = load_feature_table(features_path, interval)
    horizon = label_horizon(features_path, interval)  # None (tables written before it was recorded): default
    if tickers:
        table = table[table["ticker"].isin([t.upper() for t in tickers])]
    frame, features = prepare(table)
    result = train(frame, features, config, horizon)
    data = {"features_path": features_path, "interval": interval, "rows": len(frame),
            "tickers": ",".join(sorted(frame["ticker"].unique())),
            "first_session": str(frame["date"].min()), "last_session": str(frame["date"].max())}
    return registry.log_training(result, data, tracking_uri), result


def warm_start_step(
    features_path: str,
    sessions: int | None = None,
    epochs: int | None = None,
    interval: str = "1m",
    tracking_uri: str | None = None,
    tickers: list[str] | None = None,
):
    """Daily retraining (:mod:`hft.model.online`): the champion warm-started on the newest ``sessions``
    sessions of the feature table for ``epochs`` epochs (None: :data:`hft.model.online.SESSIONS` /
    :data:`~hft.model.online.EPOCHS`), logged and registered as ``challenger`` like a full training (params
    ``warm_start_from``, ``warm_sessions``, ``warm_epochs``). :class:`hft.model.registry.NoChampionError` when
    there is none."""
    import tempfile

    from hft.model import online, registry
    from hft.model.dataset import label_horizon, load_feature_table, prepare
    from hft.model.network import load_weights_file

    uri = tracking_uri or registry.default_tracking_uri()
    registry.check_reachable(uri)
    c = registry.client(uri)
    champion = registry.alias_version(c, registry.CHAMPION)
    if champion is None:
        raise registry.NoChampionError("no champion to warm-start from: train and promote one first (hft train)")
    with tempfile.TemporaryDirectory() as tmp:
        model, start = load_weights_file(registry.weights_path(c, champion, tmp))
    sessions = online.SESSIONS if sessions is None else int(sessions)
    epochs = online.EPOCHS if epochs is None else int(epochs)
    table = load_feature_table(features_path, interval)
    if tickers:
        table = table[table["ticker"].isin([t.upper() for t in tickers])]
    frame, _ = prepare(table, start.features)
    result = online.warm_start(frame, model, start, sessions, epochs, label_horizon(features_path, interval))
    data = {"features_path": features_path, "interval": interval, "rows": result.train_rows + len(result.holdout),
            "tickers": ",".join(sorted(frame["ticker"].unique())), "warm_start_from": champion,
            "warm_sessions": sessions, "warm_epochs": epochs,
            "first_session": str(sorted(frame["date"].unique())[-sessions]), "last_session": str(frame["date"].max())}
    return registry.log_training(result, data, uri), result


def judge(version: str, margin: float | None = None, tracking_uri: str | None = None):
    """Run the gate for ``version`` (``margin`` None: ``HFT_PROMOTION_MARGIN``) and record its verdict on the
    version in MLflow (tags and description). Returns the :class:`hft.model.registry.GateDecision`."""
    from hft.config import Settings
    from hft.model import registry
    from hft.model.report import record_verdict

    registry.audit_champion(tracking_uri)  # a champion set by hand is recorded before it is compared against
    margin = Settings.from_env().promotion_margin if margin is None else margin
    decision = registry.gate(version, margin, tracking_uri)
    if decision.champion != str(version):  # "already champion" is no verdict
        record_verdict(version, decision.promote, decision.reason, tracking_uri)
    return decision


def gate_and_promote(version: str, margin: float | None = None, tracking_uri: str | None = None) -> tuple[bool, str]:
    """Judge ``version`` (:func:`judge`) and move ``champion`` when the gate approves. Safe to re-run."""
    from hft.model import registry

    decision = judge(version, margin, tracking_uri)
    promoted = (registry.promote(version, reason=decision.reason, tracking_uri=tracking_uri, by="gate")
                if decision.promote else False)
    log.info("gate for version %s: %s -> %s", version, decision.reason, "promoted" if promoted else "champion unchanged",
             extra={"hft": {"model_version": version, "promoted": promoted}})
    return promoted, decision.reason


def train_and_register(
    features_path: str,
    config: ModelConfig = ModelConfig(),
    interval: str = "1m",
    tracking_uri: str | None = None,
    promote_if_better: bool = True,
    margin: float | None = None,
    tickers: list[str] | None = None,
    warm_start: tuple[int | None, int | None] | None = None,
) -> TrainingOutcome:
    """All steps in one process (the CLI path). ``warm_start``: ``(sessions, epochs)`` of a daily retraining
    (:func:`warm_start_step`; ``config`` is then the champion's) instead of a full training."""
    from hft.model.understanding import summary

    if warm_start is not None:
        reg, result = warm_start_step(features_path, *warm_start, interval=interval, tracking_uri=tracking_uri,
                                      tickers=tickers)
    else:
        reg, result = train_step(features_path, config, interval, tracking_uri, tickers)
    promoted, reason = False, "gate not run"
    if promote_if_better:
        promoted, reason = gate_and_promote(reg.version, margin, tracking_uri)
    ev = result.evaluation
    econ = result.economics
    return TrainingOutcome(reg.run_id, reg.version, ev.table(), ev.beats_all_baselines, promoted, reason, summary(result),
                           f"{econ.verdict()}\n{econ.table()}" if econ is not None else "")
