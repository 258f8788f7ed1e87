"""Honest evaluation: metrics with bootstrap confidence intervals, against baselines, on one holdout.

"Beats" means the 95% bootstrap interval of the paired AUC difference (model minus baseline, same
resamples) lies above zero. A model that does not beat a baseline is reported as such.

Rows of a bar table are not independent: a label looks several bars ahead, so consecutive labels of one ticker
share most of their window, and the tickers move together in the same minutes. Resampling single rows then
counts each piece of evidence several times and gives intervals too narrow to trust (a model with nothing to
find "beat chance" on a synthetic market without a predictable part). The intervals here therefore come from a
block bootstrap when the caller gives each row's block (:func:`blocks`: wall-clock slices shared by all
tickers, at least the label horizon long; ``ModelConfig.bootstrap_block_minutes``).
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


def blocks(ts, minutes: int) -> np.ndarray:
    """Block number of each timestamp: the ``minutes``-long slice of wall-clock time it falls in (UTC epoch
    minutes // ``minutes``). Rows of every ticker in the same slice share a block, so resampling blocks keeps
    together what is correlated: labels whose horizons overlap (one ticker's consecutive bars) and the tickers'
    moves in the same minutes (one market)."""
    if minutes < 1:
        raise ValueError(f"block length must be at least one minute, not {minutes}")
    import pandas as pd

    epoch_minutes = pd.to_datetime(pd.Series(ts), utc=True).dt.as_unit("ns").astype("int64").to_numpy() // 60_000_000_000
    return epoch_minutes // int(minutes)


def _resamples(n: int, resamples: int, seed: int, groups: np.ndarray | None = None):
    """Row positions of each of ``resamples`` bootstrap resamples of ``n`` rows: rows drawn with replacement
    (``groups`` None), or whole groups drawn with replacement, as many as there are groups, each bringing all
    its rows (the block bootstrap: ``groups[i]`` is row i's block, e.g. from :func:`blocks`)."""
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(resamples):
            yield rng.integers(0, n, size=n)
        return
    groups = np.asarray(groups)
    if len(groups) != n:
        raise ValueError(f"{len(groups)} group labels for {n} rows")
    order = np.argsort(groups, kind="stable")
    _, starts, counts = np.unique(groups[order], return_index=True, return_counts=True)
    for _ in range(resamples):
        drawn = rng.integers(0, len(starts), size=len(starts))
        lengths = counts[drawn]
        ends = np.cumsum(lengths)
        # row k of the resample is row (k - where its block begins in the resample) of its drawn block
        offsets = np.repeat(starts[drawn] - (ends - lengths), lengths)
        yield order[offsets + np.arange(ends[-1] if len(ends) else 0)]


def _interval(values: list[float] | np.ndarray) -> tuple[float, float]:
    """The 95% percentile interval of bootstrap values (NaN where none is a number)."""
    values = np.asarray(values, np.float64)
    if not len(values) or np.isnan(values).all():
        return float("nan"), float("nan")
    low, high = np.nanpercentile(values, [2.5, 97.5])
    return float(low), float(high)


def bootstrap(statistic, n: int, resamples: int = 500, seed: int = 0, groups: np.ndarray | None = None) -> Estimate:
    """``statistic(rows)`` over all ``n`` rows (``rows = np.arange(n)``) with the 95% percentile interval of
    its values over ``resamples`` bootstrap resamples (of rows, or of ``groups``' blocks: see :func:`_resamples`;
    NaN: no rows, or no resample gave a number)."""
    nan = float("nan")
    if not n:
        return Estimate(nan, nan, nan)
    value = float(statistic(np.arange(n)))
    return Estimate(value, *_interval([statistic(i) for i in _resamples(n, resamples, seed, groups)]))


def bootstrap_auc(y: np.ndarray, p: np.ndarray, resamples: int = 500, seed: int = 0,
                  groups: np.ndarray | None = None) -> Estimate:
    """AUC of ``p`` on labels ``y`` with its 95% bootstrap interval (NaN when a class is missing)."""
    y, p = np.asarray(y, np.float64), np.asarray(p, np.float64)
    return bootstrap(lambda i: auc(y[i], p[i]), len(y), resamples, seed, groups)


def paired_auc_difference(y: np.ndarray, p_a: np.ndarray, p_b: np.ndarray, resamples: int = 1000,
                          seed: int = 0, groups: np.ndarray | None = None) -> "Estimate":
    """AUC of ``p_a`` minus AUC of ``p_b`` on the same labels ``y``, with the 95% interval of the paired
    bootstrap (both scored on each resample, of rows or of ``groups``' blocks)."""
    y, p_a, p_b = (np.asarray(v, np.float64) for v in (y, p_a, p_b))
    return bootstrap(lambda i: auc(y[i], p_a[i]) - auc(y[i], p_b[i]), len(y), resamples, seed, groups)


def evaluate(
    y: np.ndarray, predictions: dict[str, np.ndarray], resamples: int = 500, seed: int = 0, model_key: str = "model",
    groups: np.ndarray | None = None,
) -> Evaluation:
    """Score every entry of ``predictions`` (probabilities of "up") on labels ``y``.

    ``predictions[model_key]`` is compared with each other entry by the paired bootstrap. ``groups``: each
    row's block for the block bootstrap (see :func:`blocks`; None resamples single rows, right only for
    independent rows).
    """
    y = np.asarray(y, np.float64)
    preds = {name: np.asarray(p, np.float64) for name, p in predictions.items()}
    boot: dict[str, dict[str, list[float]]] = {name: {m: [] for m in METRICS} for name in preds}
    for i in _resamples(len(y), resamples, seed, groups):  # one resample at a time: every predictor, every metric
        for name, p in preds.items():
            for m, fn in METRICS.items():
                boot[name][m].append(fn(y[i], p[i]))
    scores = {name: {m: Estimate(fn(y, p), *_interval(boot[name][m])) for m, fn in METRICS.items()}
              for name, p in preds.items()}
    comparisons = []
    for name in predictions:
        if name == model_key:
            continue
        diff = np.subtract(boot[model_key]["auc"], boot[name]["auc"])
        value = scores[model_key]["auc"].value - scores[name]["auc"].value
        comparisons.append(Comparison(name, Estimate(value, *_interval(diff))))
    return Evaluation(
        n=len(y),
        up_rate=float(y.mean()),
        scores=scores,
        comparisons=tuple(comparisons),
        calibration=calibration_curve(y, np.asarray(predictions[model_key], np.float64)),
    )
