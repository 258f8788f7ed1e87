"""Honest evaluation: metrics with bootstrap confidence intervals, against baselines, on one holdout.

"Beats" means the 95% bootstrap interval of the paired AUC difference (model minus baseline, same
resampled rows) lies above zero. A model that does not beat a baseline is reported as such.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

EPS = 1e-7


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half)."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    ranks = np.empty(len(p), np.float64)
    sorted_p = np.asarray(p)[order]
    # average ranks over ties
    _, first, counts = np.unique(sorted_p, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p >= 0.5) == (y == 1)))


METRICS = {"auc": auc, "accuracy": accuracy, "log_loss": log_loss, "brier": brier}
HIGHER_IS_BETTER = {"auc": True, "accuracy": True, "log_loss": False, "brier": False}


def calibration_curve(y: np.ndarray, p: np.ndarray, bins: int = 10) -> list[dict]:
    """Mean predicted vs observed up-rate per probability bin (empty bins omitted)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    out = []
    for b in range(bins):
        m = idx == b
        if m.any():
            out.append({"bin": b, "count": int(m.sum()), "predicted": float(p[m].mean()), "observed": float(y[m].mean())})
    return out


def plot_calibration(path, curves: dict[str, list[dict]], title: str) -> None:
    """A PNG of calibration curves (:func:`calibration_curve` output, one per label) against the diagonal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4) if len(curves) == 1 else (5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="perfect")
    for label, curve in curves.items():
        ax.plot([c["predicted"] for c in curve], [c["observed"] for c in curve], marker="o", label=label)
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed up-rate")
    ax.set_title(title)
    ax.legend(fontsize="small" if len(curves) > 1 else None)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.4f} [{self.low:.4f}, {self.high:.4f}]"


@dataclass(frozen=True)
class Comparison:
    baseline: str
    auc_diff: Estimate

    @property
    def beats(self) -> bool:
        return self.auc_diff.low > 0


@dataclass(frozen=True)
class Evaluation:
    """Metrics of the model and each baseline on one holdout, with 95% bootstrap intervals."""

    n: int
    up_rate: float
    scores: dict[str, dict[str, Estimate]]  # name -> metric -> estimate; "model" included
    comparisons: tuple[Comparison, ...]
    calibration: list[dict] = field(default_factory=list)

    @property
    def beats_all_baselines(self) -> bool:
        return all(c.beats for c in self.comparisons)

    def table(self) -> str:
        names = list(self.scores)
        lines = [f"holdout: {self.n} rows, up-rate {self.up_rate:.3f}; metric value [95% bootstrap CI]"]
        header = f"{'':<22}" + "".join(f"{m:>26}" for m in METRICS)
        lines.append(header)
        for name in names:
            lines.append(f"{name:<22}" + "".join(f"{str(self.scores[name][m]):>26}" for m in METRICS))
        for c in self.comparisons:
            verdict = "BEATS" if c.beats else "does NOT beat"
            lines.append(f"model {verdict} {c.baseline}: AUC difference {c.auc_diff}")
        return "\n".join(lines)

    def flat_metrics(self) -> dict[str, float]:
        out = {}
        for name, metrics in self.scores.items():
            for metric, est in metrics.items():
                out[f"{name}_{metric}"] = est.value
                out[f"{name}_{metric}_ci_low"] = est.low
                out[f"{name}_{metric}_ci_high"] = est.high
        for c in self.comparisons:
            out[f"auc_diff_vs_{c.baseline}"] = c.auc_diff.value
            out[f"auc_diff_vs_{c.baseline}_ci_low"] = c.auc_diff.low
        return out

    def to_dict(self) -> dict:
        return {
            "n": self.n,
            "up_rate": self.up_rate,
            "scores": {n: {m: vars(e) for m, e in ms.items()} for n, ms in self.scores.items()},
            "comparisons": [
                {"baseline": c.baseline, "auc_diff": vars(c.auc_diff), "beats": c.beats} for c in self.comparisons
            ],
            "beats_all_baselines": self.beats_all_baselines,
            "calibration": self.calibration,
        }


def _bootstrap_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap(statistic, n: int, resamples: int = 500, seed: int = 0) -> Estimate:
    """``statistic(rows)`` over all ``n`` rows (``rows = np.arange(n)``) with the 95% percentile interval of
    its values over ``resamples`` resamples of the rows with replacement (NaN: no rows, or no resample gave a
    number)."""
    nan = float("nan")
    if not n:
        return Estimate(nan, nan, nan)
    value = float(statistic(np.arange(n)))
    boot = np.array([statistic(i) for i in _bootstrap_indices(n, resamples, seed)], np.float64)
    if np.isnan(boot).all():
        return Estimate(value, nan, nan)
    return Estimate(value, *(float(v) for v in np.nanpercentile(boot, [2.5, 97.5])))


def bootstrap_auc(y: np.ndarray, p: np.ndarray, resamples: int = 500, seed: int = 0) -> Estimate:
    """AUC of ``p`` on labels ``y`` with its 95% bootstrap interval (NaN when a class is missing)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return bootstrap(lambda i: auc(y[i], p[i]), len(y), resamples, seed)


def paired_auc_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, resamples: int = 1000,
                          seed: int = 0) -> "Estimate":
    """AUC of ``p_a`` minus AUC of ``p_b`` on the same labels ``y``, with the 95% interval of the paired
    bootstrap (both scored on each resample of the rows)."""
    y, p_a, p_b = (np.asarray(v, np.float64) for v in (y, p_a, p_b))
    diff = np.array([auc(y[i], p_a[i]) - auc(y[i], p_b[i]) for i in _bootstrap_indices(len(y), resamples, seed)])
    return Estimate(auc(y, p_a) - auc(y, p_b), *np.nanpercentile(diff, [2.5, 97.5]))


def evaluate(
    y: np.ndarray, predictions: dict[str, np.ndarray], resamples: int = 500, seed: int = 0, model_key: str = "model"
) -> Evaluation:
    """Score every entry of ``predictions`` (probabilities of "up") on labels ``y``.

    ``predictions[model_key]`` is compared with each other entry by the paired bootstrap.
    """
    y = np.asarray(y, np.float64)
    idx = _bootstrap_indices(len(y), resamples, seed)
    boot: dict[str, dict[str, np.ndarray]] = {}
    scores: dict[str, dict[str, Estimate]] = {}
    for name, p in predictions.items():
        p = np.asarray(p, np.float64)
        boot[name] = {m: np.array([fn(y[i], p[i]) for i in idx]) for m, fn in METRICS.items()}
        scores[name] = {
            m: Estimate(fn(y, p), *np.nanpercentile(boot[name][m], [2.5, 97.5])) for m, fn in METRICS.items()
        }
    comparisons = []
    for name in predictions:
        if name == model_key:
            continue
        diff = boot[model_key]["auc"] - boot[name]["auc"]
        value = scores[model_key]["auc"].value - scores[name]["auc"].value
        comparisons.append(Comparison(name, Estimate(value, *np.nanpercentile(diff, [2.5, 97.5]))))
    return Evaluation(
        n=len(y),
        up_rate=float(y.mean()),
        scores=scores,
        comparisons=tuple(comparisons),
        calibration=calibration_curve(y, np.asarray(predictions[model_key], np.float64)),
    )
