"""The direction network (Keras 3 on TensorFlow) and its weights file.

``mlp``: Dense(w1) -> Dense(w2) -> Dense(w3) -> Dense(w4) (increasing widths, ReLU, optional batch norm
and dropout) -> Dense(1, sigmoid): the probability that the close 5 minutes ahead is higher.
``conv1d``: Conv1D over the last ``lookback`` bars' features (same ticker and session), flattened into the
same dense stack.

The weights file ``model_weights.h5`` is self-describing: it holds the model config, the feature names,
the scaler fitted on training data and every weight array in order, so it alone rebuilds a predictor
(Keras via :func:`load_weights_file`, numpy via :mod:`hft.model.fast`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hft.errors import HftError
from hft.model.config import ModelConfig

WEIGHTS_FORMAT = "hft-direction-weights"
WEIGHTS_VERSION = 1


class WeightsFileError(HftError, ValueError):
    """A weights file is missing, unreadable, or does not fit the network."""


@dataclass(frozen=True)
class Scaler:
    """Standardisation fitted on training rows only."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaler":
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        return cls(mean=mean, scale=np.where(scale > 0, scale, 1.0))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean) / self.scale).astype(np.float32)


def input_shape(config: ModelConfig, n_features: int) -> tuple[int, ...]:
    return (config.lookback, n_features) if config.architecture == "conv1d" else (n_features,)


def build_network(config: ModelConfig, n_features: int):
    """A compiled Keras model for ``n_features`` inputs (per bar)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    from keras import layers

    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input(shape=input_shape(config, n_features), name="features")
    x = inputs
    if config.architecture == "conv1d":
        x = layers.Conv1D(config.conv_filters, config.conv_kernel, activation="relu", name="conv")(x)
        x = layers.Flatten(name="flatten")(x)
    for i, width in enumerate(config.widths):
        x = layers.Dense(width, activation=None if config.batch_norm else "relu", name=f"dense_{i}")(x)
        if config.batch_norm:
            x = layers.BatchNormalization(name=f"bn_{i}")(x)
            x = layers.Activation("relu", name=f"relu_{i}")(x)
        if config.dropout:
            x = layers.Dropout(config.dropout, seed=config.seed + i, name=f"dropout_{i}")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="up_probability")(x)
    model = keras.Model(inputs, outputs, name=f"hft_direction_{config.architecture}")
    model.compile(
        optimizer=keras.optimizers.Adam(config.learning_rate),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.BinaryAccuracy(name="accuracy")],
    )
    return model


def save_weights_file(path: str | Path, model, config: ModelConfig, features: list[str], scaler: Scaler) -> Path:
    """Write ``model_weights.h5``: config, features, scaler and weights (atomically)."""
    import h5py

    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs["format"] = WEIGHTS_FORMAT
        f.attrs["version"] = WEIGHTS_VERSION
        f.attrs["config"] = json.dumps(asdict(config))
        f.attrs["features"] = json.dumps(list(features))
        f.create_dataset("scaler/mean", data=np.asarray(scaler.mean, np.float64))
        f.create_dataset("scaler/scale", data=np.asarray(scaler.scale, np.float64))
        group = f.create_group("weights")
        names = [w.path for w in model.weights]
        for i, (name, value) in enumerate(zip(names, model.get_weights())):
            ds = group.create_dataset(f"{i:03d}", data=value)
            ds.attrs["name"] = name
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class WeightsFile:
    config: ModelConfig
    features: list[str]
    scaler: Scaler
    weights: list[np.ndarray]
    names: list[str]


def read_weights_file(path: str | Path) -> WeightsFile:
    """Parse ``model_weights.h5``; :class:`WeightsFileError` says what is wrong with it."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"weights file not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("format") != WEIGHTS_FORMAT:
                raise WeightsFileError(f"{path} is not an hft weights file (format={f.attrs.get('format')!r})")
            if int(f.attrs.get("version", -1)) != WEIGHTS_VERSION:
                raise WeightsFileError(f"{path}: unsupported weights version {f.attrs.get('version')}")
            raw = json.loads(f.attrs["config"])
            values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
            config = ModelConfig(**values)
            features = list(json.loads(f.attrs["features"]))
            scaler = Scaler(mean=f["scaler/mean"][()], scale=f["scaler/scale"][()])
            keys = sorted(f["weights"].keys())
            weights = [f["weights"][k][()] for k in keys]
            names = [str(f["weights"][k].attrs.get("name", k)) for k in keys]
    except WeightsFileError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise WeightsFileError(f"corrupt weights file {path}: {exc}") from None
    if len(scaler.mean) != len(features) or len(scaler.scale) != len(features):
        raise WeightsFileError(f"{path}: scaler has {len(scaler.mean)} columns for {len(features)} features")
    return WeightsFile(config, features, scaler, weights, names)


def load_weights_file(path: str | Path):
    """Rebuild the Keras model from ``model_weights.h5``; returns (model, WeightsFile)."""
    wf = read_weights_file(path)
    model = build_network(wf.config, len(wf.features))
    expected = [tuple(w.shape) for w in model.get_weights()]
    found = [tuple(w.shape) for w in wf.weights]
    if expected != found:
        raise WeightsFileError(f"{path}: weight shapes {found} do not fit the network {expected}")
    model.set_weights(wf.weights)
    return model, wf
