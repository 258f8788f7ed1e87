"""Leakage-free training: walk-forward folds with purge and embargo, a final refit, holdout evaluation.

1. The latest ``holdout_fraction`` of sessions is put aside (purged at its boundary) and touched only once,
   at the end, to evaluate the model and the baselines.
2. Walk-forward folds over the remaining sessions: each fold fits the scaler on its training rows only,
   trains with class weights and early stopping on its validation block, and records its metrics.
3. The final model is refitted on every pre-holdout row for the mean best epoch count of the folds.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hft.model.config import ModelConfig
from hft.model.dataset import DatasetError, holdout_split, walk_forward
from hft.model.economics import EconomicReport, economic_evaluation
from hft.model.evaluation import Evaluation, auc, blocks, evaluate, log_loss
from hft.model.fast import FastPredictor
from hft.model.network import Scaler, build_network
from hft.model.understanding import DriftReport, drift_report, permutation_importance, summary

log = logging.getLogger(__name__)


def sequence_windows(frame: pd.DataFrame, lookback: int) -> tuple[np.ndarray, np.ndarray]:
    """For each row with ``lookback - 1`` earlier rows of the same ticker and session: the positions of
    those rows and itself (oldest first), and the row's own position. Returned in frame order."""
    n = len(frame)
    order = np.lexsort((frame["ts"].to_numpy(), frame["date"].astype(str).to_numpy(), frame["ticker"].astype(str).to_numpy()))
    keys = (frame["ticker"].astype(str) + "|" + frame["date"].astype(str)).to_numpy()[order]
    starts = np.r_[True, keys[1:] != keys[:-1]] if n else np.zeros(0, bool)
    start_idx = np.maximum.accumulate(np.where(starts, np.arange(n), 0)) if n else np.zeros(0, int)
    pos = np.arange(n) - start_idx
    ends = np.flatnonzero(pos >= lookback - 1)
    windows = order[ends[:, None] + np.arange(-(lookback - 1), 1)[None, :]]
    rows = order[ends]
    back = np.argsort(rows, kind="stable")
    return windows[back], rows[back]


def model_inputs(frame: pd.DataFrame, features: list[str], config: ModelConfig, scaler: Scaler | None):
    """Network inputs (scaled, unless ``scaler`` is None) and the row positions they belong to.

    ``mlp``: one row per bar. ``conv1d``: the last ``lookback`` rows of the same ticker and session
    (rows without a full window are left out, so positions are returned explicitly).
    """
    raw = frame[features].to_numpy(np.float64)
    x = scaler.transform(raw) if scaler is not None else raw
    if config.architecture == "mlp":
        return x, np.arange(len(frame))
    windows, rows = sequence_windows(frame, config.lookback)
    return x[windows], rows


#: Which way each early-stopping metric improves.
_MODE = {"auc": "max", "loss": "min"}


def class_weights(y: np.ndarray) -> dict[int, float]:
    n, pos = len(y), float(y.sum())
    return {0: n / (2.0 * (n - pos)), 1: n / (2.0 * pos)}


def fit(config: ModelConfig, x_tr, y_tr, x_va=None, y_va=None, epochs: int | None = None, start=None):
    """Train a network of ``config`` (early stopping on the validation rows, when given); ``start``: a network
    whose weights it starts from (a copy: ``start`` itself is left unchanged), instead of a fresh one."""
    import keras

    model = build_network(config, x_tr.shape[-1])
    if start is not None:
        model.set_weights(start.get_weights())
    callbacks = []
    if x_va is not None:
        callbacks.append(
            keras.callbacks.EarlyStopping(monitor=f"val_{config.early_stopping}", mode=_MODE[config.early_stopping],
                                          patience=config.patience, restore_best_weights=True)
        )
    history = model.fit(
        x_tr, y_tr,
        validation_data=(x_va, y_va) if x_va is not None else None,
        epochs=epochs or config.epochs,
        batch_size=config.batch_size,
        class_weight=class_weights(y_tr) if config.class_weighting else None,
        shuffle=True,
        verbose=0,
        callbacks=callbacks,
    )
    return model, history.history


def predict(model, x: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    return model.predict(x, batch_size=batch_size, verbose=0).reshape(-1)


@dataclass
class TrainResult:
    model: object
    config: ModelConfig
    features: list[str]
    scaler: Scaler
    folds: list[dict]
    evaluation: Evaluation
    epochs: int
    holdout: pd.DataFrame = field(repr=False)
    holdout_proba: np.ndarray = field(repr=False)
    train_rows: int = 0
    horizon_minutes: int = 5  # the label horizon of the feature table it was trained on
    importance: dict = field(default_factory=dict, repr=False)  # hft.model.understanding.permutation_importance
    drift: DriftReport | None = field(default=None, repr=False)  # training rows against the latest sessions
    economics: EconomicReport | None = field(default=None, repr=False)  # the holdout traded, after costs


#: LightGBM's settings for the gradient-boosted-trees baseline: shallow trees, shrinkage, row and column
#: subsampling, large leaves (1-minute returns are mostly noise); fixed before any holdout was seen. The
#: number of trees is chosen like the network's epochs: early stopping on each walk-forward fold's validation
#: AUC, then a refit on every pre-holdout row for the folds' mean.
BOOSTING = {"objective": "binary", "learning_rate": 0.05, "num_leaves": 15, "min_data_in_leaf": 200,
            "feature_fraction": 0.8, "bagging_fraction": 0.8, "bagging_freq": 1, "lambda_l2": 1.0,
            "metric": "auc", "deterministic": True, "force_row_wise": True, "num_threads": 2, "verbose": -1}
BOOSTING_MAX_TREES, BOOSTING_PATIENCE = 500, 30


def boosted_trees(pre: pd.DataFrame, hold: pd.DataFrame, features: list[str], config: ModelConfig) -> np.ndarray:
    """Holdout probabilities of gradient-boosted trees (LightGBM, :data:`BOOSTING`) fitted on ``pre`` only:
    the strongest simple model a quant would try on the same features."""
    import lightgbm as lgb

    params = {**BOOSTING, "seed": config.seed}
    x_pre, y_pre = pre[features].to_numpy(np.float64), pre["label"].to_numpy()
    best = []
    for split in walk_forward(pre, config.folds, config.embargo_minutes):
        train_set = lgb.Dataset(x_pre[split.train], y_pre[split.train], free_raw_data=False)
        valid_set = lgb.Dataset(x_pre[split.valid], y_pre[split.valid], reference=train_set)
        booster = lgb.train(params, train_set, BOOSTING_MAX_TREES, valid_sets=[valid_set],
                            callbacks=[lgb.early_stopping(BOOSTING_PATIENCE, verbose=False)])
        best.append(max(1, booster.best_iteration))
    trees = max(1, int(round(float(np.mean(best)))))
    booster = lgb.train(params, lgb.Dataset(x_pre, y_pre), trees)
    log.info("gradient-boosted trees: %d trees (folds' early stopping: %s)", trees, best)
    return np.asarray(booster.predict(hold[features].to_numpy(np.float64)), np.float64)


def baselines(pre: pd.DataFrame, hold: pd.DataFrame, features: list[str], scaler: Scaler,
              config: ModelConfig) -> dict[str, np.ndarray]:
    """Probabilities from the baselines, fitted on the pre-holdout rows only: the naive ones (majority class,
    sign of the last return), logistic regression and gradient-boosted trees."""
    from sklearn.linear_model import LogisticRegression

    y_tr = pre["label"].to_numpy()
    up = float(y_tr.mean())
    sign_tr = np.sign(pre["ret_1"].to_numpy()) if "ret_1" in pre else np.zeros(len(pre))
    sign_ho = np.sign(hold["ret_1"].to_numpy()) if "ret_1" in hold else np.zeros(len(hold))
    rate = {s: float(y_tr[sign_tr == s].mean()) if (sign_tr == s).any() else up for s in (-1.0, 0.0, 1.0)}
    logit = LogisticRegression(max_iter=500, class_weight="balanced", random_state=config.seed)
    logit.fit(scaler.transform(pre[features].to_numpy(np.float64)), y_tr)
    return {
        "majority_class": np.full(len(hold), up),
        "last_return_sign": np.array([rate[s] for s in sign_ho]),
        "logistic_regression": logit.predict_proba(scaler.transform(hold[features].to_numpy(np.float64)))[:, 1],
        "gradient_boosted_trees": boosted_trees(pre, hold, features, config),
    }


def trade_holdout_predictions(last_fold, hold: pd.DataFrame, preds: dict[str, np.ndarray], features: list[str],
                              config: ModelConfig) -> EconomicReport | None:
    """The holdout's predictions (model and baselines) traded after costs (:mod:`hft.model.economics`), each
    with thresholds chosen on the last walk-forward fold's validation block: the fold's network scored it, the
    baselines are fitted on the fold's training rows. None (logged) when the rows lack a close or the
    volatility the executor sizes by."""
    from hft.features.definitions import FeatureSpec

    tr, va, p_va, scaler = last_fold
    needed = [c for c in ("close", FeatureSpec().volatility_feature) if c not in hold.columns]
    if needed:
        log.info("economic evaluation skipped: the feature table has no %s column", ", ".join(needed))
        return None
    valid = {"model": p_va, **baselines(tr, va, features, scaler, config)}
    return economic_evaluation(va, valid, hold, preds, resamples=config.bootstrap, seed=config.seed,
                               block_minutes=config.bootstrap_block_minutes)


def seed_everything(seed: int) -> None:
    """Make what follows deterministic: Python, NumPy and TensorFlow seeds, deterministic TF ops."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def check_embargo(config: ModelConfig, horizon_minutes: int | None) -> int:
    """The labels' horizon (None: the default :class:`FeatureSpec`'s); DatasetError when the embargo is shorter
    (a training label would then see into the validation block), or a bootstrap block shorter than it."""
    from hft.features.definitions import FeatureSpec

    horizon = FeatureSpec().horizon_minutes if horizon_minutes is None else int(horizon_minutes)
    if config.embargo_minutes < horizon:
        raise DatasetError(f"embargo_minutes={config.embargo_minutes} is shorter than the labels' horizon of "
                           f"{horizon} minutes: training labels would overlap validation (set embargo_minutes>={horizon})")
    if config.bootstrap_block_minutes < horizon:
        raise DatasetError(f"bootstrap_block_minutes={config.bootstrap_block_minutes} is shorter than the labels' "
                           f"horizon of {horizon} minutes: overlapping labels would be resampled as independent "
                           f"evidence and the intervals too narrow (set bootstrap_block_minutes>={horizon})")
    return horizon


def train(frame: pd.DataFrame, features: list[str], config: ModelConfig = ModelConfig(),
          horizon_minutes: int | None = None) -> TrainResult:
    """Train and evaluate on a prepared feature table (see :func:`hft.model.dataset.prepare`) whose labels
    look ``horizon_minutes`` ahead (None: the default :class:`FeatureSpec`'s). Refuses (DatasetError) an
    embargo shorter than that horizon: a training label would then see into the validation block."""
    horizon = check_embargo(config, horizon_minutes)
    seed_everything(config.seed)

    outer = holdout_split(frame, config.holdout_fraction, config.embargo_minutes)
    pre = frame.iloc[outer.train].reset_index(drop=True)
    hold = frame.iloc[outer.valid].reset_index(drop=True)
    if len(pre) == 0:
        raise DatasetError("no training rows before the holdout")
    fold_results, best_epochs = [], []
    for k, split in enumerate(walk_forward(pre, config.folds, config.embargo_minutes)):
        tr, va = pre.iloc[split.train], pre.iloc[split.valid]
        if tr["label"].nunique() < 2 or va["label"].nunique() < 2:
            raise DatasetError(f"fold {k}: a single label class; need more sessions")
        scaler = Scaler.fit(tr[features].to_numpy(np.float64))
        x_tr, r_tr = model_inputs(tr, features, config, scaler)
        x_va, r_va = model_inputs(va, features, config, scaler)
        y_tr, y_va = tr["label"].to_numpy()[r_tr], va["label"].to_numpy()[r_va]
        model, hist = fit(config, x_tr, y_tr, x_va, y_va)
        p = predict(model, x_va)
        watched = np.asarray(hist[f"val_{config.early_stopping}"])
        best = int(np.argmax(watched) if _MODE[config.early_stopping] == "max" else np.argmin(watched)) + 1
        best_epochs.append(best)
        last_fold = (tr, va.iloc[r_va].reset_index(drop=True), p, scaler)
        fold_results.append({"fold": k, "train_rows": len(y_tr), "valid_rows": len(y_va), "best_epoch": best,
                             "auc": auc(y_va, p), "log_loss": log_loss(y_va, p)})
        log.info("fold %d: train %d rows, valid %d rows, AUC %.4f, best epoch %d", k, len(y_tr), len(y_va),
                 fold_results[-1]["auc"], best)
    epochs = max(1, int(round(float(np.mean(best_epochs)))))
    scaler = Scaler.fit(pre[features].to_numpy(np.float64))
    x_pre, r_pre = model_inputs(pre, features, config, scaler)
    model, _ = fit(config, x_pre, pre["label"].to_numpy()[r_pre], epochs=epochs)
    return assess(model, config, features, scaler, pre, hold, fold_results, epochs, len(r_pre), horizon, last_fold)


def assess(model, config: ModelConfig, features: list[str], scaler: Scaler, pre: pd.DataFrame, hold: pd.DataFrame,
           folds: list[dict], epochs: int, train_rows: int, horizon: int, last_fold=None) -> TrainResult:
    """A trained ``model`` (inputs scaled by ``scaler``) on the ``hold`` rows: the evaluation against the
    baselines fitted on ``pre``, permutation importance, drift, and (with ``last_fold``, see
    :func:`trade_holdout_predictions`) the economic evaluation."""
    x_ho, r_ho = model_inputs(hold, features, config, scaler)
    raw_ho, _ = model_inputs(hold, features, config, scaler=None)  # the same rows, unscaled (the fast path's input)
    hold = hold.iloc[r_ho].reset_index(drop=True)
    proba = predict(model, x_ho)
    preds = {"model": proba, **baselines(pre, hold, features, scaler, config)}
    groups = blocks(hold["ts"], config.bootstrap_block_minutes)
    evaluation = evaluate(hold["label"].to_numpy(), preds, resamples=config.bootstrap, seed=config.seed, groups=groups)
    log.info("holdout evaluation\n%s", evaluation.table())
    # the numpy fast path (the stream's, within 1e-5 of Keras) scores the shuffled copies ~50x faster than Keras
    fast = FastPredictor.from_keras(model, config, features, scaler)
    importance = permutation_importance(fast.predict_proba, raw_ho, hold["label"].to_numpy(), features, seed=config.seed)
    drift = drift_report(pre, hold, proba, features, resamples=config.bootstrap, seed=config.seed, groups=groups)
    economics = trade_holdout_predictions(last_fold, hold, preds, features, config) if last_fold is not None else None
    result = TrainResult(model, config, features, scaler, folds, evaluation, epochs, hold, proba, train_rows,
                         horizon, importance, drift, economics)
    log.info("%s", summary(result))
    return result
