"""Training end to end on the synthetic market: it learns when there is something to learn, and does not
appear to beat chance when there is nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from model_fixtures import FAST

from hft.model.config import ModelConfig
from hft.model.dataset import prepare
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
