"""Every hyper-parameter of the direction model, in one frozen place.

Defaults are what ``hft train`` uses; each field can be overridden from the command line
(``hft train --set epochs=5 --set widths=16,32,64,128``) or from ``HFT_MODEL_<FIELD>`` variables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from hft.config import parse_setting, settings_from_env


@dataclass(frozen=True)
class ModelConfig:
    """Network, training and evaluation settings.

    Attributes:
        architecture: ``mlp`` (4 dense layers of increasing width) or ``conv1d`` (over the last
            ``lookback`` bars of the same ticker and session, then the dense stack).
        widths: dense layer widths, increasing.
        dropout, batch_norm: regularisation after each dense layer (dropout 0.3 by default: see bench/model_study.py).
        lookback, conv_filters, conv_kernel: the Conv1D variant's input window and layer.
        learning_rate, batch_size, epochs, patience: Adam and early stopping.
        early_stopping: the validation metric early stopping (and the folds' best epoch) watches: ``auc``
            (max) or ``loss`` (min, the binary cross-entropy).
        class_weighting: weight the classes to balance up and down in the loss (False: plain cross-entropy).
        folds: walk-forward folds inside the training period (each: train on everything before,
            validate on the next block); the last fold's model is the one kept.
        holdout_fraction: the latest share of sessions, never touched by training, for evaluation.
        embargo_minutes: gap between training labels and any later evaluation block; at least the
            label horizon so no training label window overlaps validation (purge + embargo).
        bootstrap: resamples for the confidence intervals.
        bootstrap_block_minutes: the block bootstrap's wall-clock blocks (all tickers together; at least the
            label horizon, see :mod:`hft.model.evaluation`).
        seed: makes training and bootstraps deterministic.
    """

    architecture: str = "mlp"
    widths: tuple[int, ...] = (32, 64, 128, 256)
    dropout: float = 0.3  # bench/model_study.py: 0.1 lost to logistic regression on the synthetic market for 2 of 3 seeds
    batch_norm: bool = False
    lookback: int = 16
    conv_filters: int = 16
    conv_kernel: int = 3
    learning_rate: float = 1e-3
    batch_size: int = 512
    epochs: int = 30
    patience: int = 4
    early_stopping: str = "auc"
    class_weighting: bool = True
    folds: int = 3
    holdout_fraction: float = 0.2
    embargo_minutes: int = 5
    bootstrap: int = 500
    bootstrap_block_minutes: int = 30
    seed: int = 42

    def __post_init__(self) -> None:
        if self.architecture not in ("mlp", "conv1d"):
            raise ValueError(f"architecture must be mlp or conv1d, not {self.architecture!r}")
        if len(self.widths) != 4 or any(w <= 0 for w in self.widths):
            raise ValueError(f"widths must be 4 positive layer widths, got {self.widths}")
        if list(self.widths) != sorted(self.widths):
            raise ValueError(f"widths must increase layer by layer, got {self.widths}")
        if not 0 <= self.dropout < 1:
            raise ValueError("dropout must be in [0, 1)")
        if not 0 < self.holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if self.folds < 1 or self.epochs < 1 or self.batch_size < 1 or self.patience < 0:
            raise ValueError("folds, epochs and batch_size must be positive, patience >= 0")
        if self.early_stopping not in ("auc", "loss"):
            raise ValueError(f"early_stopping must be auc or loss, not {self.early_stopping!r}")
        if self.bootstrap < 1 or self.bootstrap_block_minutes < 1:
            raise ValueError("bootstrap and bootstrap_block_minutes must be positive")
        if self.lookback < 2 or self.conv_kernel > self.lookback:
            raise ValueError("lookback must be >= 2 and >= conv_kernel")

    def with_overrides(self, **values: str) -> "ModelConfig":
        """A copy with fields set from strings (``"16,32,64,128"``, ``"true"``, ``"0.2"``)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        parsed: dict[str, Any] = {}
        for name, raw in values.items():
            if name not in fields:
                raise ValueError(f"unknown model setting {name!r}; known: {', '.join(fields)}")
            parsed[name] = parse_setting(name, getattr(self, name), raw)
        return dataclasses.replace(self, **parsed)

    @classmethod
    def from_env(cls) -> "ModelConfig":
        """From ``HFT_MODEL_<FIELD>`` variables (:func:`hft.config.settings_from_env`)."""
        return settings_from_env(cls, "HFT_MODEL_")

    def to_params(self) -> dict[str, str]:
        """Flat string parameters for MLflow."""
        return {k: ",".join(map(str, v)) if isinstance(v, tuple) else str(v) for k, v in dataclasses.asdict(self).items()}


def config_with(overrides: list[str] | None) -> ModelConfig:
    """``ModelConfig.from_env()`` with ``NAME=VALUE`` overrides (the CLI's ``--set``); ValueError names a
    malformed item or a bad value."""
    values = {}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"--set expects NAME=VALUE, got {item!r}")
        name, value = item.split("=", 1)
        values[name.strip()] = value.strip()
    return ModelConfig.from_env().with_overrides(**values)

