"""The champion model for live inference, reloaded when the registry alias moves (no restart)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from typing import Any

from hft.errors import HftError
from hft.model.registry import NoChampionError

log = logging.getLogger(__name__)

__all__ = ["ChampionModel", "NoChampionError"]


class ChampionModel:
    """Callable returning ``(FastPredictor, version)``; checks the alias at most every ``refresh_s``. The predictor's
    batch path runs on ``device`` (:data:`hft.model.fast.DEVICES`; None: ``HFT_INFERENCE_DEVICE``, default
    ``auto``: the GPU when one is usable), logged and exported as ``hft_inference_device{device}``.

    ``accept(predictor)`` raises (a :class:`hft.errors.UserError` saying why) for a model this job cannot serve,
    e.g. one reading features it does not compute: a later champion is then refused (logged once) and the loaded
    version goes on serving (``HftServingNotChampion`` alerts); the first one is an error, unless there is a
    ``fallback`` version to serve instead (the tasks engine's Python workers, which start and restart at any time:
    the version the driver accepted at start)."""

    def __init__(self, tracking_uri: str | None = None, alias: str = "champion", refresh_s: float = 5.0, clock=time.monotonic,
                 device: str | None = None, accept: Callable[[Any], None] | None = None, fallback: str | None = None):
        from hft.config import env_value
        from hft.model.fast import DEVICES

        self.device = device or env_value("HFT_INFERENCE_DEVICE", "auto")
        if self.device not in DEVICES:
            raise ValueError(f"HFT_INFERENCE_DEVICE must be one of {', '.join(DEVICES)}, got {self.device!r}")
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.refresh_s = refresh_s
        self.clock = clock
        self._checked = -float("inf")
        self._version: str | None = None
        self._predictor: Any = None  # a FastPredictor once loaded
        self.gate_status = "unknown"  # the served version's gate verdict: approved, rejected or unknown
        self.accept = accept or (lambda predictor: None)
        self.fallback = fallback
        self._refused: str | None = None  # the version accept() refused last (not loaded again)

    def __call__(self):
        now = self.clock()
        if self._predictor is None or now - self._checked >= self.refresh_s:
            self._checked = now
            self._refresh()
        return self._predictor, self._version

    def _refresh(self) -> None:
        from hft.model import registry
        from hft.observability.metrics import INFERENCE_DEVICE, REGISTRY_CHAMPION_VERSION

        try:
            client = registry.client(self.tracking_uri)
            version = registry.alias_version(client, self.alias)
        except Exception as exc:  # noqa: BLE001 - keep serving the loaded model if the registry blips
            if self._predictor is None:
                raise
            log.warning("registry unreachable, keeping model version %s: %s", self._version, exc)
            return
        if version is None:
            if self._predictor is None:
                raise NoChampionError(f"no '{self.alias}' version of {registry.MODEL_NAME}: run `hft train` first")
            return
        try:
            REGISTRY_CHAMPION_VERSION.set(float(version))
        except ValueError:
            pass
        if version in (self._version, self._refused):
            return
        try:
            predictor = self._load(registry, client, version)
        except Exception as exc:  # noqa: BLE001 - an unloadable new champion: keep serving (HftServingNotChampion)
            if self._predictor is None:
                raise
            log.error("cannot load %s version %s, still serving version %s: %s", registry.MODEL_NAME, version,
                      self._version, exc)
            return
        try:
            self.accept(predictor)
        except HftError as exc:
            instead = self._version if self._predictor is not None else (
                self.fallback if self.fallback != version else None)
            if instead is None:
                raise
            self._refused = version
            log.error("cannot serve %s version %s, serving version %s: %s", registry.MODEL_NAME, version, instead, exc,
                      extra={"hft": {"refused_version": version}})
            if self._predictor is not None:
                return
            version, predictor = instead, self._load(registry, client, instead)
            self.accept(predictor)
        self.gate_status = self._audit(registry, client, version)
        log.info("serving %s version %s (was %s; gate %s) on %s", registry.MODEL_NAME, version, self._version,
                 self.gate_status, predictor.device,
                 extra={"hft": {"model_version": version, "gate": self.gate_status, "device": predictor.device}})
        INFERENCE_DEVICE.clear()
        INFERENCE_DEVICE.labels(predictor.device).set(1)
        self._predictor, self._version = predictor, version

    def _load(self, registry, client, version: str):
        """``version``'s weights from the registry as a predictor on this instance's device."""
        from hft.model.fast import FastPredictor

        with tempfile.TemporaryDirectory() as tmp:
            return FastPredictor.from_weights_file(registry.weights_path(client, version, tmp)).on(self.device)

    def _audit(self, registry, client, version: str) -> str:
        """Record an alias moved past hft (the MLflow UI); the version's gate verdict, also as a metric."""
        from hft.model.report import gate_status
        from hft.observability.metrics import STREAM_MODEL_GATE_APPROVED

        try:
            registry.audit_champion(self.tracking_uri)
            status = gate_status(client, version)
        except Exception as exc:  # noqa: BLE001 - serving goes on; the metric says "not approved"
            log.warning("could not audit the champion version %s: %s", version, exc)
            status = "unknown"
        STREAM_MODEL_GATE_APPROVED.set(1.0 if status == "approved" else 0.0)
        self._export_understanding(registry, client, version)
        return status

    @staticmethod
    def _export_understanding(registry, client, version: str) -> None:
        """The served version's drift report (its training run's ``psi_<feature>`` and ``recent_auc`` metrics)
        as ``hft_model_feature_psi`` and ``hft_model_recent_auc``; none for a version trained without one."""
        from hft.observability.metrics import MODEL_FEATURE_PSI, MODEL_RECENT_AUC

        MODEL_FEATURE_PSI.clear()
        MODEL_RECENT_AUC.clear()
        try:
            metrics = registry.run_metrics(client, version)
        except Exception as exc:  # noqa: BLE001 - serving goes on without the figures
            log.warning("could not read the drift report of version %s: %s", version, exc)
            return
        for key, value in metrics.items():
            if key.startswith("psi_") and key != "psi_max":
                MODEL_FEATURE_PSI.labels(key[len("psi_"):]).set(value)
        for stat, key in (("value", "recent_auc"), ("low", "recent_auc_ci_low"), ("high", "recent_auc_ci_high")):
            if key in metrics:
                MODEL_RECENT_AUC.labels(stat).set(metrics[key])
