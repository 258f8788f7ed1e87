"""The live feature-shift signal: 0 on training-like data, the mean's move in training standard deviations."""

from __future__ import annotations

import numpy as np
import pytest

from hft.streaming.drift import FeatureShift

MEAN, SCALE = np.array([10.0, -1.0]), np.array([2.0, 0.5])


def test_training_like_data_stays_near_zero_and_a_moved_feature_shows_its_move():
    rng = np.random.default_rng(0)
    shift = FeatureShift(halflife=200)
    for _ in range(50):
        out = shift.update("1", ["a", "b"], MEAN + SCALE * rng.standard_normal((40, 2)), MEAN, SCALE)
    assert abs(out["a"]) < 0.15 and abs(out["b"]) < 0.15
    for _ in range(50):  # feature a's mean moves by 3 training standard deviations
        out = shift.update("1", ["a", "b"], MEAN + SCALE * (rng.standard_normal((40, 2)) + [3.0, 0.0]), MEAN, SCALE)
    assert out["a"] == pytest.approx(3.0, abs=0.2) and abs(out["b"]) < 0.15


def test_halflife_weights_bars_not_batches():
    one = FeatureShift(halflife=10)
    many = FeatureShift(halflife=10)
    one.update("1", ["a"], np.zeros((1, 1)), np.zeros(1), np.ones(1))
    many.update("1", ["a"], np.zeros((1, 1)), np.zeros(1), np.ones(1))
    one.update("1", ["a"], np.ones((10, 1)), np.zeros(1), np.ones(1))
    for _ in range(10):
        many.update("1", ["a"], np.ones((1, 1)), np.zeros(1), np.ones(1))
    assert one.shift[0] == pytest.approx(0.5) and many.shift[0] == pytest.approx(0.5)


def test_non_finite_values_are_ignored_and_a_new_model_resets():
    shift = FeatureShift(halflife=5)
    out = shift.update("1", ["a", "b"], np.array([[np.nan, 1.0], [np.inf, 1.0]]) * SCALE + MEAN, MEAN, SCALE)
    assert out["a"] == 0.0 and out["b"] == pytest.approx(1.0)
    out = shift.update("2", ["a", "b"], np.array([[MEAN[0], MEAN[1]]]), MEAN, SCALE)
    assert out == {"a": 0.0, "b": 0.0}
    with pytest.raises(ValueError):
        FeatureShift(halflife=0)
