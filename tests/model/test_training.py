"""Training end to end on the synthetic market: it learns when there is something to learn, and does not
appear to beat chance when there is nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from model_fixtures import FAST

from hft.model.config import ModelConfig
from hft.model.dataset import prepare
from hft.model.economics import LEVELS
from hft.model.network import build_network
from hft.model.training import class_weights, model_inputs, train


def test_network_is_four_dense_layers_of_increasing_width_with_sigmoid_output():
    model = build_network(ModelConfig(), 25)
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    assert [d.units for d in dense] == [32, 64, 128, 256, 1]
    assert dense[-1].activation.__name__ == "sigmoid"


def test_config_rejects_decreasing_widths_and_unknown_settings():
    with pytest.raises(ValueError, match="increase"):
        ModelConfig(widths=(64, 32, 16, 8))
    with pytest.raises(ValueError, match="unknown model setting"):
        ModelConfig().with_overrides(layers="3")
    assert ModelConfig().with_overrides(widths="8,16,32,64", batch_norm="true").batch_norm is True


def test_class_weights_balance_classes():
    w = class_weights(np.array([1, 0, 0, 0]))
    assert w[1] * 1 == pytest.approx(w[0] * 3)


def test_train_default_strength_beats_chance(predictable_table):
    frame, features = prepare(predictable_table)
    result = train(frame, features, FAST)
    ev = result.evaluation
    assert ev.scores["model"]["auc"].low > 0.5
    assert {c.baseline: c.beats for c in ev.comparisons}["majority_class"]
    assert len(result.folds) == FAST.folds
    # what it relies on: a predictive model loses AUC when some feature is shuffled; drift over its last sessions
    assert set(result.importance) == set(features) and max(v["auc_drop"] for v in result.importance.values()) > 0.005
    assert result.drift.recent_sessions == sorted(result.holdout["date"].astype(str).unique())[-5:]
    assert set(result.drift.psi) == set(features) and result.drift.recent_auc.low > 0.5
    # traded after costs, each predictor with thresholds from the last fold's validation block
    econ = result.economics
    assert econ.never_trades == ["majority_class"]
    assert list(econ.results) == ["model", "last_return_sign", "logistic_regression", "gradient_boosted_trees"]
    m = econ.model
    assert m.thresholds.level in LEVELS and m.sessions == result.holdout["date"].nunique() and m.trades > 0
    assert m.net_pnl == pytest.approx(m.gross_pnl - m.costs) and m.costs > 0
    # the holdout is strictly after everything the final model saw
    assert result.holdout["ts"].min() > frame["ts"].iloc[: result.train_rows].max()


def test_train_zero_strength_does_not_appear_to_beat_chance(random_table):
    frame, features = prepare(random_table)
    ev = train(frame, features, FAST).evaluation
    auc = ev.scores["model"]["auc"]
    assert auc.low < 0.5 < auc.high or abs(auc.value - 0.5) < 0.01
    assert not {c.baseline: c.beats for c in ev.comparisons}["majority_class"]


def test_train_is_deterministic_for_a_seed(predictable_table):
    frame, features = prepare(predictable_table)
    small = frame[frame["date"] <= sorted(frame["date"].unique())[11]]
    cfg = dataclasses.replace(FAST, epochs=2, bootstrap=20)
    a, b = train(small, features, cfg), train(small, features, cfg)
    np.testing.assert_array_equal(a.holdout_proba, b.holdout_proba)


def test_conv1d_variant_trains_and_uses_lookback_windows(predictable_table):
    frame, features = prepare(predictable_table)
    small = frame[frame["date"] <= sorted(frame["date"].unique())[11]]
    cfg = dataclasses.replace(FAST, architecture="conv1d", lookback=8, epochs=2, bootstrap=20)
    result = train(small, features, cfg)
    x, rows = model_inputs(result.holdout, features, cfg, result.scaler)
    assert x.shape[1:] == (8, len(features))
    assert result.model.input_shape == (None, 8, len(features))
    assert np.isfinite(result.holdout_proba).all()


def _nonlinear_frame(rows_per_day: int = 300, days: int = 12, seed: int = 3):
    """Sessions of rows whose label is up exactly when |x1| > 1 (invisible to a linear model), x2 is noise."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    parts = []
    for d in range(days):
        day = pd.Timestamp("2024-03-04") + pd.Timedelta(days=d)
        ts = day + pd.Timedelta(hours=14, minutes=30) + pd.to_timedelta(np.arange(rows_per_day), "m")
        x1, x2 = rng.normal(size=rows_per_day), rng.normal(size=rows_per_day)
        parts.append(pd.DataFrame({"ticker": "AAA", "date": day.date(), "ts": ts, "x1": x1, "x2": x2,
                                   "ret_1": x2, "label": (np.abs(x1) > 1).astype(int)}))
    return pd.concat(parts, ignore_index=True)


def test_gradient_boosted_trees_baseline_sees_what_a_linear_model_cannot_and_only_from_training_rows():
    from hft.model.dataset import holdout_split
    from hft.model.evaluation import auc
    from hft.model.network import Scaler
    from hft.model.training import baselines, boosted_trees

    frame = _nonlinear_frame()
    split = holdout_split(frame, 0.25, 5)
    pre, hold = frame.iloc[split.train].reset_index(drop=True), frame.iloc[split.valid].reset_index(drop=True)
    features = ["x1", "x2"]
    preds = baselines(pre, hold, features, Scaler.fit(pre[features].to_numpy(np.float64)), FAST)
    y = hold["label"].to_numpy()
    assert set(preds) == {"majority_class", "last_return_sign", "logistic_regression", "gradient_boosted_trees"}
    assert auc(y, preds["gradient_boosted_trees"]) > 0.95, "trees learn |x1| > 1"
    assert abs(auc(y, preds["logistic_regression"]) - 0.5) < 0.1, "a linear model cannot"
    np.testing.assert_array_equal(preds["gradient_boosted_trees"], boosted_trees(pre, hold, features, FAST))

    # fitted on the pre-holdout rows only: holdout labels do not change a single probability
    flipped = hold.assign(label=1 - hold["label"])
    np.testing.assert_array_equal(boosted_trees(pre, flipped, features, FAST), preds["gradient_boosted_trees"])


def test_class_weighting_and_the_early_stopping_metric_are_settings():
    """Class weights pull the mean probability to one half; without them it is the training up-rate. Early stopping
    may watch the validation loss instead of the AUC. (The model study, bench/model_study.py, compares both.)"""
    frame = _nonlinear_frame(days=10)
    cfg = dataclasses.replace(FAST, epochs=5, bootstrap=20)
    weighted = train(frame, ["x1", "x2"], cfg)
    plain = train(frame, ["x1", "x2"], dataclasses.replace(cfg, class_weighting=False, early_stopping="loss"))
    up = float(frame["label"].mean())
    assert up < 0.4
    mean_plain, mean_weighted = float(np.mean(plain.holdout_proba)), float(np.mean(weighted.holdout_proba))
    assert abs(mean_weighted - 0.5) < 0.1 and mean_plain < mean_weighted - 0.05, (up, mean_plain, mean_weighted)
    assert all(1 <= f["best_epoch"] <= 5 for f in plain.folds)
    with pytest.raises(ValueError, match="early_stopping"):
        ModelConfig(early_stopping="accuracy")
    assert ModelConfig().with_overrides(class_weighting="false", early_stopping="loss").class_weighting is False
