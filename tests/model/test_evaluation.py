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


def test_blocks_are_wall_clock_slices_shared_by_every_ticker():
    import pandas as pd

    from hft.model.evaluation import blocks

    ts = pd.to_datetime(["2024-03-04 14:30", "2024-03-04 14:30", "2024-03-04 14:59", "2024-03-04 15:00",
                         "2024-03-05 14:30"], utc=True)
    b = blocks(ts, 30)
    assert b[0] == b[1] == b[2] and b[3] == b[2] + 1 and b[4] > b[3]  # two tickers at 14:30 share a block
    # whatever the timestamps' unit (bars and Parquet columns come in microseconds)
    np.testing.assert_array_equal(blocks(pd.Series(ts).dt.as_unit("us"), 30), b)
    np.testing.assert_array_equal(blocks(pd.Series(ts).dt.as_unit("s").to_numpy(), 30), b)
    with pytest.raises(ValueError, match="at least one minute"):
        blocks(ts, 0)


def test_block_resamples_draw_whole_blocks_as_many_as_there_are():
    from hft.model.evaluation import _resamples

    groups = np.repeat([7, 3, 9, 1], [2, 5, 1, 4])[np.random.default_rng(0).permutation(12)]
    for rows in _resamples(len(groups), 50, seed=1, groups=groups):
        drawn, per_block = np.unique(groups[rows], return_counts=True)
        sizes = {g: int((groups == g).sum()) for g in drawn}
        assert all(c % sizes[g] == 0 for g, c in zip(drawn, per_block))  # whole blocks only
        assert sum(c // sizes[g] for g, c in zip(drawn, per_block)) == 4  # four blocks drawn
    with pytest.raises(ValueError, match="group labels"):
        next(_resamples(5, 1, 0, groups[:4]))


def _overlapping_null_market(seed: int, n: int = 1500):
    """Labels that look 5 bars ahead (overlapping windows) and a slowly moving score that knows nothing of
    them: the true AUC is 0.5, but neighbouring rows repeat the same evidence."""
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n + 5)
    y = (np.convolve(e, np.ones(5), "valid")[1:] > 0).astype(float)[:n]
    score = np.empty(n)
    score[0] = 0.0
    for t in range(1, n):
        score[t] = 0.98 * score[t - 1] + rng.normal()
    return y, score


def test_block_bootstrap_keeps_its_coverage_where_the_row_bootstrap_claims_a_false_edge():
    """On many null markets with overlapping labels the row bootstrap's 95% interval excludes 0.5 far more
    often than 5% of the time (it counts each 5-bar move several times); 30-bar blocks stay near nominal."""
    import pandas as pd

    from hft.model.evaluation import blocks, bootstrap_auc

    ts = pd.date_range("2024-03-04 14:30", periods=1500, freq="min", tz="UTC")
    groups = blocks(ts, 30)
    misses = {"rows": 0, "blocks": 0}
    trials = 40
    for s in range(trials):
        y, score = _overlapping_null_market(s)
        for kind, g in (("rows", None), ("blocks", groups)):
            est = bootstrap_auc(y, score, resamples=150, seed=s, groups=g)
            misses[kind] += not est.low < 0.5 < est.high
    assert misses["rows"] >= 0.25 * trials, misses
    assert misses["blocks"] <= 0.15 * trials, misses
