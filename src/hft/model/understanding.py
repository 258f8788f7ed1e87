"""What a trained model relies on, and how far the market has moved from what it learned on.

* :func:`permutation_importance`: the holdout AUC lost when one feature's values are shuffled across rows
  (its link to the label broken, its distribution kept), averaged over ``repeats`` shuffles. A feature the
  model ignores costs nothing; a negative figure is noise.
* :func:`psi`: the population stability index of a feature between two samples, over the deciles of the
  first: ``sum((a - e) * ln(a / e))``. Rules of thumb: < 0.1 stable, 0.1-0.25 moved, > 0.25 shifted.
* :func:`drift_report`: PSI of every feature between the training rows and the most recent sessions of the
  holdout (a feature with one value per session, such as the overnight gap, over its values per ticker and
  session: NaN, not judged, with fewer than :data:`MIN_SESSION_VALUES` of them, whose PSI would exceed the
  threshold by chance alone), and the model's AUC on those sessions (against its AUC on the whole holdout): a model whose recent
  AUC falls to chance, or whose inputs shifted, is one to retrain. Logged with each training run
  (``understanding.json``, metrics ``importance_<feature>``, ``psi_<feature>``, ``psi_max``, ``recent_auc``)
  and exported by the streaming job for the champion it serves (``hft_model_feature_psi{feature}``,
  ``hft_model_recent_auc``) for the ``HftModelDrift`` and ``HftModelRecentAuc`` alerts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hft.model.evaluation import Estimate, auc, bootstrap_auc

#: PSI above which a feature counts as shifted (the alert's threshold too).
PSI_SHIFTED = 0.25
#: Sessions at the end of the holdout that count as "recent".
RECENT_SESSIONS = 5
_FLOOR = 1e-4  # a share below this in a bin counts as this (ln(0) otherwise)
#: The fewest (ticker, session) values a per-session feature's PSI is judged on: with n draws from an unchanged
#: distribution over 10 bins, PSI is about chi2(9) / n, whose 95th percentile (16.9 / n) stays below
#: PSI_SHIFTED from about 70 values on.
MIN_SESSION_VALUES = 100


def psi(expected: np.ndarray, actual: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``actual`` against ``expected`` over ``expected``'s quantile bins
    (bins ``(-inf, q1], (q1, q2], ...``: a constant feature is one bin, values above it another; non-finite values
    left out; NaN when either side has none)."""
    e = np.asarray(expected, np.float64)
    a = np.asarray(actual, np.float64)
    e, a = e[np.isfinite(e)], a[np.isfinite(a)]
    if not len(e) or not len(a):
        return float("nan")
    edges = np.unique(np.quantile(e, np.linspace(0, 1, bins + 1)[1:-1]))
    share_e = np.bincount(np.searchsorted(edges, e, side="left"), minlength=len(edges) + 1) / len(e)
    share_a = np.bincount(np.searchsorted(edges, a, side="left"), minlength=len(edges) + 1) / len(a)
    share_e, share_a = np.maximum(share_e, _FLOOR), np.maximum(share_a, _FLOOR)
    return float(np.sum((share_a - share_e) * np.log(share_a / share_e)))


def permutation_importance(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, y: np.ndarray,
                           features: list[str], repeats: int = 3, seed: int = 0) -> dict[str, dict[str, float]]:
    """Per feature: the mean and standard deviation over ``repeats`` shuffles of (AUC of ``predict(x)`` minus
    AUC with that feature's column shuffled across rows). ``x``: rows x features, or rows x time x features
    (a window model: the feature is shuffled across rows at every time step alike)."""
    rng = np.random.default_rng(seed)
    base = auc(y, predict(x))
    out = {}
    for j, name in enumerate(features):
        drops = []
        for _ in range(repeats):
            shuffled = x.copy()
            shuffled[..., j] = x[rng.permutation(len(x)), ..., j]
            drops.append(base - auc(y, predict(shuffled)))
        out[name] = {"auc_drop": float(np.mean(drops)), "std": float(np.std(drops))}
    return out


@dataclass(frozen=True)
class DriftReport:
    """PSI per feature (training rows against the recent sessions), the model's AUC there and overall."""

    psi: dict[str, float]
    recent_sessions: list[str]
    recent_rows: int
    recent_auc: Estimate
    holdout_auc: float

    @property
    def shifted(self) -> list[str]:
        return [f for f, v in self.psi.items() if v > PSI_SHIFTED]

    @property
    def psi_max(self) -> float:
        finite = [v for v in self.psi.values() if np.isfinite(v)]
        return max(finite) if finite else float("nan")

    def to_dict(self) -> dict:
        return {"psi": self.psi, "psi_shifted_above": PSI_SHIFTED, "shifted": self.shifted, "psi_max": self.psi_max,
                "recent_sessions": self.recent_sessions, "recent_rows": self.recent_rows,
                "recent_auc": vars(self.recent_auc), "holdout_auc": self.holdout_auc}


def _feature_psi(train: pd.DataFrame, recent: pd.DataFrame, feature: str) -> float:
    """:func:`psi` of ``feature`` between the two tables: over rows, or for a per-session feature over its
    values per (ticker, session), NaN when the recent side has fewer than :data:`MIN_SESSION_VALUES`."""
    from hft.features.definitions import SESSION_FEATURES

    if feature not in SESSION_FEATURES:
        return psi(train[feature].to_numpy(), recent[feature].to_numpy())
    sessions = [t.groupby(["ticker", t["date"].astype(str)])[feature].first().to_numpy() for t in (train, recent)]
    return psi(*sessions) if len(sessions[1]) >= MIN_SESSION_VALUES else float("nan")


def drift_report(train: pd.DataFrame, hold: pd.DataFrame, proba: np.ndarray, features: list[str],
                 sessions: int = RECENT_SESSIONS, resamples: int = 500, seed: int = 0,
                 groups: np.ndarray | None = None) -> DriftReport:
    """PSI of each feature between ``train`` and the last ``sessions`` sessions of ``hold`` (``proba``: the
    model's probabilities for ``hold``'s rows), and the model's AUC there with its bootstrap interval
    (``groups``: each ``hold`` row's bootstrap block, see :func:`hft.model.evaluation.blocks`)."""
    days = sorted(hold["date"].astype(str).unique())
    recent_days = days[-sessions:]
    recent = hold["date"].astype(str).isin(recent_days).to_numpy()
    y = hold["label"].to_numpy()
    return DriftReport(
        psi={f: _feature_psi(train, hold.loc[recent], f) for f in features},
        recent_sessions=recent_days,
        recent_rows=int(recent.sum()),
        recent_auc=bootstrap_auc(y[recent], np.asarray(proba)[recent], resamples, seed,
                                 None if groups is None else np.asarray(groups)[recent]),
        holdout_auc=auc(y, proba),
    )


def understanding_metrics(result) -> dict[str, float]:
    """A training result's importance and drift as MLflow metrics (finite values only): ``importance_<f>``,
    ``psi_<f>``, ``psi_max``, ``recent_auc`` (+ ``_ci_low``/``_ci_high``)."""
    out = {f"importance_{f}": v["auc_drop"] for f, v in result.importance.items()}
    if result.drift is not None:
        d = result.drift
        out.update({f"psi_{f}": v for f, v in d.psi.items()})
        out.update({"psi_max": d.psi_max, "recent_auc": d.recent_auc.value, "recent_auc_ci_low": d.recent_auc.low,
                    "recent_auc_ci_high": d.recent_auc.high})
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}


def plot_importance(path, importance: dict[str, dict[str, float]]) -> None:
    """A PNG bar chart of :func:`permutation_importance` (largest first, with its standard deviation)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = sorted(importance.items(), key=lambda kv: kv[1]["auc_drop"])
    fig, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * len(items) + 1)))
    ax.barh([k for k, _ in items], [v["auc_drop"] for _, v in items], xerr=[v["std"] for _, v in items], color="tab:blue")
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("holdout AUC lost when the feature is shuffled")
    ax.set_title("permutation importance")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def summary(result, top: int = 5) -> str:
    """Two lines for people: the ``top`` features by permutation importance, and the drift report."""
    ranked = sorted(result.importance.items(), key=lambda kv: -kv[1]["auc_drop"])[:top]
    lines = ["permutation importance (holdout AUC lost when shuffled): "
             + ", ".join(f"{f} {v['auc_drop']:+.4f}" for f, v in ranked)]
    d = result.drift
    if d is not None:
        worst = max(d.psi, key=lambda f: d.psi[f] if np.isfinite(d.psi[f]) else -1.0) if d.psi else "-"
        lines.append(f"drift over the last {len(d.recent_sessions)} sessions ({d.recent_rows} rows): PSI max "
                     f"{d.psi_max:.3f} ({worst}), shifted (> {PSI_SHIFTED}): {', '.join(d.shifted) or 'none'}; "
                     f"AUC there {d.recent_auc} (whole holdout {d.holdout_auc:.4f})")
    return "\n".join(lines)
