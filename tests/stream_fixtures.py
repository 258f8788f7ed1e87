"""What the end-to-end stream tests share: a champion model trained on the synthetic market, and how many
bars of a day have every feature (so how many predictions the stream must write)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path


def train_champion(home: Path, tickers: list[str]) -> None:
    """Version 1 (the champion) and version 2 (not promoted) of a tiny model, in the MLflow store the
    environment names (``MLFLOW_TRACKING_URI``); ``home`` is the test's HFT_HOME."""
    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.training import train

    bars = SyntheticSource().fetch(tickers, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 20, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars))
    cfg = ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64))
    first = registry.log_training(train(frame, features, cfg), {}, None)
    registry.promote(first.version, "test")
    registry.log_training(train(frame, features, ModelConfig(epochs=1, folds=1, bootstrap=20, widths=(8, 16, 32, 64),
                                                             seed=5)), {}, None)


def ready_count(messages) -> int:
    """How many bars have every feature (the others are warming up at the session start)."""
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features
    from hft.streaming.state import bars_frame

    feats = compute_features(bars_frame(messages), labelled_only=False)
    return int(feats.dropna(subset=FeatureSpec().feature_names()).shape[0])
