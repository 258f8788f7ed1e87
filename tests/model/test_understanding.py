"""Permutation importance and the drift report (hft.model.understanding) on data whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hft.model.understanding import PSI_SHIFTED, drift_report, permutation_importance, psi


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    train = rng.normal(size=20_000)
    assert psi(train, rng.normal(size=5_000)) < 0.01
    assert psi(train, rng.normal(0.05, 1, size=5_000)) < 0.1, "a small move is stable"
    assert psi(train, rng.normal(1.0, 1, size=5_000)) > PSI_SHIFTED, "one standard deviation is a shift"
    assert psi(train, rng.normal(0, 3, size=5_000)) > PSI_SHIFTED, "so is a wider spread"
    # non-finite values are left out, an empty side has no PSI
    assert psi(np.r_[train, np.nan, np.inf], np.r_[train[:1000], -np.inf]) < 0.02
    assert np.isnan(psi(train, np.array([np.nan])))
    # a constant training feature (one bin) against values elsewhere: shifted, not an error
    assert psi(np.zeros(100), np.ones(100)) > PSI_SHIFTED


def test_permutation_importance_finds_the_feature_the_model_uses_and_nothing_in_one_it_ignores():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4_000, 3))
    y = (x[:, 0] + 0.5 * rng.normal(size=4_000) > 0).astype(int)

    def predict(v):  # uses feature 0 strongly, feature 2 a little, never feature 1
        return 1 / (1 + np.exp(-(v[..., 0] + 0.1 * v[..., 2]))) if v.ndim == 2 else predict(v[:, -1, :])

    imp = permutation_importance(predict, x, y, ["a", "b", "c"], repeats=3, seed=0)
    assert imp["a"]["auc_drop"] > 0.3 and imp["b"] == {"auc_drop": 0.0, "std": 0.0}
    assert 0 < imp["c"]["auc_drop"] < imp["a"]["auc_drop"]
    assert imp == permutation_importance(predict, x, y, ["a", "b", "c"], repeats=3, seed=0), "seeded"
    # windows (rows x time x features): a feature is shuffled across rows at every step alike
    windows = np.stack([x, x], axis=1)
    imp3 = permutation_importance(predict, windows, y, ["a", "b", "c"], repeats=3, seed=0)
    assert imp3["a"]["auc_drop"] > 0.3 and imp3["b"]["auc_drop"] == 0.0


def _sessions(days: int, rows: int, shift_from: int, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for d in range(days):
        a = rng.normal(1.5 if d >= shift_from else 0.0, 1, rows)
        parts.append(pd.DataFrame({"date": str(pd.Timestamp("2024-05-01") + pd.Timedelta(days=d))[:10],
                                   "a": a, "b": rng.normal(size=rows), "label": rng.integers(0, 2, rows)}))
    return pd.concat(parts, ignore_index=True)


def test_drift_report_compares_training_rows_with_the_latest_sessions_and_scores_the_model_there():
    frame = _sessions(days=20, rows=200, shift_from=17)
    train, hold = frame[frame["date"] < "2024-05-13"], frame[frame["date"] >= "2024-05-13"].reset_index(drop=True)
    recent_days = sorted(hold["date"].unique())[-5:]
    recent = hold["date"].isin(recent_days).to_numpy()
    # a model that is right on the latest sessions and guesses before them
    proba = np.where(recent, hold["label"].to_numpy() * 0.8 + 0.1, np.random.default_rng(3).random(len(hold)))
    report = drift_report(train, hold, proba, ["a", "b"], sessions=5, resamples=100)
    assert report.recent_sessions == recent_days and report.recent_rows == 5 * 200
    assert report.psi["a"] > PSI_SHIFTED > report.psi["b"] and report.shifted == ["a"]
    assert report.psi_max == report.psi["a"]
    assert report.recent_auc.value == 1.0 and report.recent_auc.low == 1.0
    assert 0.6 < report.holdout_auc < 0.9
    d = report.to_dict()
    assert d["shifted"] == ["a"] and d["recent_auc"]["value"] == 1.0 and d["psi_shifted_above"] == PSI_SHIFTED


def test_drift_report_of_a_holdout_shorter_than_the_window_uses_all_of_it():
    frame = _sessions(days=6, rows=50, shift_from=99)
    train, hold = frame[frame["date"] < "2024-05-04"], frame[frame["date"] >= "2024-05-04"].reset_index(drop=True)
    report = drift_report(train, hold, np.full(len(hold), 0.5), ["a", "b"], sessions=5, resamples=50)
    assert report.recent_rows == len(hold) and report.recent_auc.value == pytest.approx(0.5)
    assert max(report.psi.values()) < PSI_SHIFTED


def test_drift_of_a_per_session_feature_counts_sessions_and_is_not_judged_on_too_few():
    """The overnight gap has one value per ticker and session: its PSI is over those values (not the rows that
    repeat them), and NaN (never 'shifted') while the recent sessions hold fewer than MIN_SESSION_VALUES."""
    from hft.model.understanding import MIN_SESSION_VALUES

    rng = np.random.default_rng(4)

    def table(days: int, tickers: int, scale: float, start: str) -> pd.DataFrame:
        gaps = rng.normal(0, scale, (days, tickers))
        return pd.DataFrame([{"ticker": f"T{t}", "date": str(pd.Timestamp(start) + pd.Timedelta(days=d))[:10],
                              "overnight_gap": gaps[d, t], "label": int(rng.integers(0, 2))}
                             for d in range(days) for t in range(tickers) for _ in range(30)])

    train = table(40, 30, 0.01, "2024-01-01")
    same, wider = table(5, 30, 0.01, "2024-03-01"), table(5, 30, 0.03, "2024-03-01")
    few = table(5, 11, 0.03, "2024-03-01")
    assert 5 * 11 < MIN_SESSION_VALUES <= 5 * 30
    psi_of = {name: drift_report(train, hold, np.full(len(hold), 0.5), ["overnight_gap"], resamples=20)
              .psi["overnight_gap"] for name, hold in {"same": same, "wider": wider, "few": few}.items()}
    assert psi_of["same"] < PSI_SHIFTED < psi_of["wider"] and np.isnan(psi_of["few"])
