"""Train -> evaluate -> register -> gate -> promote, as one function shared by the CLI, the
``jobs/train_model.py`` entry point and the ``model_training`` DAG."""

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


def train_and_register(
    features_path: str,
    config: ModelConfig = ModelConfig(),
    interval: str = "1m",
    tracking_uri: str | None = None,
    promote_if_better: bool = True,
    margin: float = 0.0,
    tickers: list[str] | None = None,
) -> TrainingOutcome:
    """Read the feature table, train with walk-forward validation, log and register the model as
    ``challenger``, then (optionally) run the gate and promote it to ``champion``."""
    from hft.model import registry
    from hft.model.dataset import load_feature_table, prepare
    from hft.model.training import train

    registry.check_reachable(tracking_uri or registry.default_tracking_uri())
    table = load_feature_table(features_path, interval)
    if tickers:
        table = table[table["ticker"].isin([t.upper() for t in tickers])]
    frame, features = prepare(table)
    result = train(frame, features, config)
    data = {"features_path": features_path, "interval": interval, "rows": len(frame),
            "tickers": ",".join(sorted(frame["ticker"].unique())),
            "first_session": str(frame["date"].min()), "last_session": str(frame["date"].max())}
    reg = registry.log_training(result, data, tracking_uri)
    promoted, reason = False, "gate not run"
    if promote_if_better:
        decision = registry.gate(reg.version, margin, tracking_uri)
        reason = decision.reason
        if decision.promote:
            promoted = registry.promote(reg.version, reason=decision.reason, tracking_uri=tracking_uri)
        log.info("gate: %s -> %s", reason, "promoted" if promoted else "not promoted")
    return TrainingOutcome(reg.run_id, reg.version, result.evaluation.table(),
                           result.evaluation.beats_all_baselines, promoted, reason)
