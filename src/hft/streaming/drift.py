"""Live feature drift: how far the features the stream serves have moved from those the champion was trained on.

For each feature, an exponentially weighted mean of its standardised value ``z = (x - mean) / scale`` over the
bars scored, with the model's own training mean and scale (the scaler folded into the network): 0 while live
data look like the training data, +-1 when a feature's mean has moved by one training standard deviation. It
is exported as ``hft_stream_feature_shift{feature}`` for the ``HftFeatureDrift`` alert. (The full drift report
with PSI per feature is computed offline; this is the live, cheap signal.)
"""

from __future__ import annotations

import numpy as np


class FeatureShift:
    """EWMA of standardised features, one weight per bar (``halflife`` bars); reset when the model changes."""

    def __init__(self, halflife: float = 500.0):
        if not halflife > 0:
            raise ValueError(f"halflife must be > 0 bars, got {halflife}")
        self.decay = 0.5 ** (1.0 / halflife)
        self.version: str | None = None
        self.names: list[str] = []
        self.shift = np.zeros(0)
        self.bars = 0

    def update(self, version: str, names: list[str], x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> dict[str, float]:
        """Fold the rows of ``x`` (bars x features, raw; non-finite values ignored per feature) in; returns the
        shift per feature."""
        if version != self.version or list(names) != self.names:
            self.version, self.names, self.shift, self.bars = version, list(names), np.zeros(len(names)), 0
        x = np.asarray(x, np.float64).reshape(len(x), -1)
        if not len(x):
            return dict(zip(self.names, self.shift.tolist()))
        z = (x - mean) / scale
        finite = np.isfinite(z)
        n = finite.sum(axis=0)
        batch_mean = np.where(n > 0, np.where(finite, z, 0.0).sum(axis=0) / np.maximum(n, 1), 0.0)
        keep = self.decay ** n  # n bars at once: the weight the old value keeps
        if self.bars == 0:
            keep = np.where(n > 0, 0.0, 1.0)  # the first bars set the level
        self.shift = keep * self.shift + (1.0 - keep) * batch_mean
        self.bars += int(n.max())
        return dict(zip(self.names, self.shift.tolist()))
