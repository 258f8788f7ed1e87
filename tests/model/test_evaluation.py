"""Metrics and bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score
from sklearn.metrics import log_loss as sk_log_loss

from hft.model.evaluation import auc, brier, calibration_curve, evaluate, log_loss


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    p = np.clip(0.5 + 0.2 * (y - 0.5) + rng.normal(0, 0.2, 2000), 0.01, 0.99).round(2)  # ties included
    assert auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert log_loss(y, p) == pytest.approx(sk_log_loss(y, p), rel=1e-9)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), rel=1e-12)


def test_evaluate_informative_model_beats_noise_baseline():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 3000)
    good = np.clip(0.5 + 0.3 * (y - 0.5) + rng.normal(0, 0.2, 3000), 0, 1)
    ev = evaluate(y, {"model": good, "noise": rng.random(3000)}, resamples=200)
    assert ev.comparisons[0].beats
    est = ev.scores["model"]["auc"]
    assert est.low < est.value < est.high


def test_evaluate_noise_model_does_not_beat_constant():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 3000)
    ev = evaluate(y, {"model": rng.random(3000), "majority_class": np.full(3000, y.mean())}, resamples=200)
    assert not ev.beats_all_baselines
    assert "does NOT beat majority_class" in ev.table()


def test_calibration_curve_of_calibrated_scores_is_diagonal():
    rng = np.random.default_rng(3)
    p = rng.random(200_000)
    y = (rng.random(200_000) < p).astype(int)
    for b in calibration_curve(y, p):
        assert b["observed"] == pytest.approx(b["predicted"], abs=0.02)
