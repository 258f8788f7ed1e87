"""Feature tables from the synthetic market (reference engine, no Spark) and a quick model config."""

from __future__ import annotations

from datetime import datetime, timezone

from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource
from hft.features.reference import compute_features
from hft.model.config import ModelConfig

TICKERS = ["AAA", "BBB", "CCC", "DDD"]

#: Small and quick, still enough for the tests' statistics.
FAST = ModelConfig(epochs=4, folds=2, patience=2, bootstrap=200, widths=(16, 32, 64, 128))


def feature_table(predictability: float, seed: int = 11, end=datetime(2024, 2, 16, tzinfo=timezone.utc)):
    bars = SyntheticSource(SyntheticConfig(predictability=predictability, seed=seed)).fetch(
        TICKERS, datetime(2024, 1, 2, tzinfo=timezone.utc), end, "1m"
    )
    return compute_features(bars)
