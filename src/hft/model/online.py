"""Online learning: the champion warm-started on the newest sessions every day, through the same gate.

* :func:`warm_start`: the champion's network (its weights, settings, features and scaler, from its
  ``model_weights.h5``) trained ``epochs`` more epochs on the newest ``sessions`` sessions but the last, which
  is the holdout: the same evaluation against baselines fitted on those sessions, importance and drift as a
  full training (:func:`hft.model.training.assess`), logged and registered the same way, judged by the same gate
  (the challenger's AUC against the champion's on that holdout, paired interval above the margin, naive
  baselines beaten). The scaler stays the champion's: the network's weights were learned on its scale.
  No economic evaluation (there is no validation block to choose thresholds on).
* :func:`replay`: what daily retraining would have done over past sessions: each day, warm-start the model
  of the day before on the sessions before it, gate it against that model, and score the day with the
  model the gate left in place, beside the frozen champion. ``bench/online_learning.py`` runs it on a synthetic
  market whose regime changes.

``hft train --warm-start`` runs one retraining (the ``model_retraining`` DAG does, each weekday after the close).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hft.model.dataset import DatasetError, holdout_split
from hft.model.network import WeightsFile
from hft.model.training import TrainResult, assess, check_embargo, fit, model_inputs, seed_everything

log = logging.getLogger(__name__)

#: Newest sessions a retraining sees (the last one is its holdout), and the epochs it trains on them.
SESSIONS, EPOCHS = 10, 3


def warm_start(frame: pd.DataFrame, model, start: WeightsFile, sessions: int = SESSIONS, epochs: int = EPOCHS,
               horizon_minutes: int | None = None) -> TrainResult:
    """``model`` (a Keras network described by ``start``, left unchanged) trained ``epochs`` more epochs on the
    newest ``sessions`` sessions of the prepared feature table ``frame`` but the last, and assessed on that
    last session."""
    config, features, scaler = start.config, list(start.features), start.scaler
    horizon = check_embargo(config, horizon_minutes)
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise DatasetError(f"the feature table lacks the champion's feature(s): {', '.join(missing)}")
    if sessions < 2 or epochs < 1:
        raise DatasetError(f"a warm start needs at least 2 sessions and 1 epoch, got {sessions} and {epochs}")
    dates = sorted(frame["date"].unique())
    if len(dates) < sessions:
        raise DatasetError(f"a warm start on {sessions} sessions needs them: the feature table has {len(dates)}")
    recent = frame[frame["date"].isin(dates[-sessions:])].reset_index(drop=True)
    split = holdout_split(recent, 1.0 / sessions, config.embargo_minutes)
    pre = recent.iloc[split.train].reset_index(drop=True)
    hold = recent.iloc[split.valid].reset_index(drop=True)
    seed_everything(config.seed)
    x_pre, r_pre = model_inputs(pre, features, config, scaler)
    tuned, _ = fit(config, x_pre, pre["label"].to_numpy()[r_pre], epochs=epochs, start=model)
    log.info("warm start: %d epochs on %d rows of sessions %s..%s, holdout %s", epochs, len(r_pre), dates[-sessions],
             dates[-2], dates[-1])
    return assess(tuned, config, features, scaler, pre, hold, [], epochs, len(r_pre), horizon)


@dataclass(frozen=True)
class Day:
    """One day of :func:`replay`: the AUC on that session of the frozen champion and of the model daily
    retraining had in place, and whether the retraining of the evening before passed the gate."""

    date: str
    rows: int
    frozen_auc: float
    online_auc: float
    promoted: bool
    reason: str


def replay(frame: pd.DataFrame, model, start: WeightsFile, days: int, sessions: int = SESSIONS,
           epochs: int = EPOCHS, margin: float = 0.001, resamples: int = 1000) -> list[Day]:
    """Daily retraining over the last ``days`` sessions of ``frame``, starting from the champion ``model``
    (see the module docstring). The gate is :func:`hft.model.registry.challenger_verdict`, as in the registry."""
    from hft.model.evaluation import auc, blocks
    from hft.model.fast import FastPredictor
    from hft.model.registry import challenger_verdict

    config, features, scaler = start.config, list(start.features), start.scaler

    def scorer(m):
        return FastPredictor.from_keras(m, config, features, scaler)

    def score(predictor, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Labels, probabilities and bootstrap blocks of the rows the predictor can score."""
        x, kept = model_inputs(rows, features, config, scaler=None)
        groups = blocks(rows["ts"].to_numpy()[kept], config.bootstrap_block_minutes)
        return rows["label"].to_numpy()[kept], predictor.predict_proba(x), groups

    frozen = current = scorer(model)
    current_model, out = model, []
    dates = sorted(frame["date"].unique())
    if days >= len(dates):
        raise DatasetError(f"replaying {days} days needs more sessions than the {len(dates)} of the feature table")
    for day in dates[-days:]:
        result = warm_start(frame[frame["date"] < day], current_model, start, sessions, epochs)
        y_hold, p_champion, groups = score(current, result.holdout)
        promoted, reason = challenger_verdict(y_hold, result.holdout_proba, p_champion, result.evaluation.to_dict(),
                                              margin, "of the day before", resamples, config.seed, groups)
        if promoted:
            current_model, current = result.model, scorer(result.model)
        today = frame[frame["date"] == day].reset_index(drop=True)
        y, p_frozen, _ = score(frozen, today)
        _, p_online, _ = score(current, today)
        out.append(Day(str(day), len(y), auc(y, p_frozen), auc(y, p_online), bool(promoted), reason))
        log.info("replay %s: frozen AUC %.4f, daily retraining %.4f (%s)", day, out[-1].frozen_auc,
                 out[-1].online_auc, "promoted" if promoted else "kept")
    return out


def replay_table(days: list[Day]) -> str:
    lines = [f"{'session':<12} {'rows':>6} {'frozen AUC':>11} {'retrained AUC':>14}  gate (evening before)",
             "-" * 70]
    lines += [f"{d.date:<12} {d.rows:>6} {d.frozen_auc:>11.4f} {d.online_auc:>14.4f}  "
              f"{'promoted' if d.promoted else 'kept'}" for d in days]
    return "\n".join(lines)


__all__ = ["EPOCHS", "SESSIONS", "Day", "replay", "replay_table", "warm_start"]
