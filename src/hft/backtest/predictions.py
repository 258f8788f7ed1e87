"""Predictions for a backtest from historical bars: the same features and the same champion model as the
streaming job, or probabilities computed elsewhere.

- Features: :func:`hft.features.reference.compute_features` with ``labelled_only=False`` (the live path:
  the future is unknown), the executor's volatility from ``FeatureSpec.per_bar_volatility`` of
  ``FeatureSpec.volatility_feature`` — exactly what :mod:`hft.streaming.processor` publishes.
- Model: the registry's ``champion`` loaded by :class:`hft.streaming.champion.ChampionModel` (a
  :class:`hft.model.fast.FastPredictor`), or any object with its interface. Only bars with every feature
  finite are scored (the streaming job skips the others as warming up). A ``conv1d`` model gets the last
  ``lookback`` scored bars of the same ticker and session, as in training
  (:func:`hft.model.training.sequence_windows`).
- Or a precomputed ``probability`` per (ticker, ts), joined onto the feature rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date

import numpy as np
import pandas as pd

from hft.errors import HftError
from hft.features.definitions import FeatureSpec

log = logging.getLogger(__name__)

PREDICTION_COLUMNS = ["ticker", "ts", "probability", "close", "volatility"]


class PredictionsError(HftError, ValueError):
    """Bars or probabilities that cannot give predictions (nothing in range, missing columns...)."""


def load_bars(lake_root: str, interval: str, tickers: list[str] | None, start: date, end: date,
              context_days: int = 0, spec: FeatureSpec | None = None) -> pd.DataFrame:
    """Clean bars of the lake for session dates ``[start, end]``, and of the ``context_days`` calendar days
    before ``start`` (the earlier sessions some features read: ``hft.features.definitions.CONTEXT_DAYS``; drop
    their rows after computing features, see :func:`predictions_from_bars`); with ``spec``, the bars of the
    market context tickers ``tickers``' features read too, when the lake has them (keep only ``tickers``'
    predictions: ``predictions_from_bars(tickers=)``)."""
    from datetime import timedelta

    from hft.data.calendar import session_date
    from hft.data.lake import BarLake

    read = spec.with_context([t.upper() for t in tickers]) if tickers and spec is not None else tickers
    bars = BarLake(lake_root).read(interval, read, start - timedelta(days=context_days), end)
    inside = bars[session_date(bars["ts"]) >= start] if context_days and not bars.empty else bars
    if inside.empty:
        which = ",".join(tickers) if tickers else "any ticker"
        raise PredictionsError(f"no {interval} bars in the lake at {lake_root} for {which} between {start} and {end}")
    if tickers:
        absent = sorted({t.upper() for t in tickers} - set(inside["ticker"].unique()))
        if absent:
            raise PredictionsError(f"no {interval} bars between {start} and {end} for: {', '.join(absent)}")
    return bars


def features_for(bars: pd.DataFrame, spec: FeatureSpec = FeatureSpec()) -> pd.DataFrame:
    """Feature rows for every bar (no labels needed) with the executor's ``volatility`` column added."""
    from hft.features.reference import compute_features

    feats = compute_features(bars, spec, labelled_only=False)
    feats["volatility"] = spec.per_bar_volatility(feats[spec.volatility_feature].to_numpy(np.float64))
    return feats


def score(feats: pd.DataFrame, predictor) -> np.ndarray:
    """Probability per feature row (NaN where the model has no input: a feature missing, or a conv1d
    window not yet full)."""
    names = list(predictor.features)
    missing = [c for c in names if c not in feats.columns]
    if missing:
        raise PredictionsError(f"the model needs feature(s) the feature table lacks: {', '.join(missing)}")
    x = feats[names].to_numpy(np.float64)
    ready = np.isfinite(x).all(axis=1)
    out = np.full(len(feats), np.nan)
    if not ready.any():
        return out
    shape = tuple(getattr(predictor, "sample_shape", (len(names),)))
    if len(shape) == 1:
        out[ready] = predictor.predict_proba(x[ready])
        return out
    from hft.model.training import sequence_windows

    rows = np.flatnonzero(ready)
    frame = feats.iloc[rows][["ticker", "ts", "date"]].reset_index(drop=True)
    windows, own = sequence_windows(frame, shape[0])
    if len(own):
        out[rows[own]] = predictor.predict_proba(x[rows][windows])
    return out


def champion(tracking_uri: str | None = None) -> Callable[[], tuple[object, str]]:
    """The streaming job's loader of the registry's ``champion`` (``() -> (FastPredictor, version)``)."""
    from hft.streaming.champion import ChampionModel

    return ChampionModel(tracking_uri, refresh_s=float("inf"))


def predictions_from_bars(
    bars: pd.DataFrame,
    model: Callable[[], tuple[object, str]] | None = None,
    probabilities: pd.DataFrame | None = None,
    spec: FeatureSpec = FeatureSpec(),
    tracking_uri: str | None = None,
    start: date | None = None,
    tickers: list[str] | None = None,
) -> tuple[pd.DataFrame, str]:
    """Backtest input (``ticker, ts, probability, close, volatility``, replay order) and where the
    probabilities came from (``"model version N"`` or ``"precomputed"``); with ``start``, only the bars of
    sessions from ``start`` on (the earlier ones gave their features context), and with ``tickers`` only
    theirs (the others' bars gave market context).

    ``probabilities`` (``ticker, ts, probability``) wins over the model; otherwise ``model()`` gives
    ``(predictor, version)``, by default the registry's champion (:func:`champion`). Rows without a
    probability or a volatility are dropped (the executor could not size them).
    """
    feats = features_for(bars, spec)
    if start is not None:
        feats = feats[feats["date"] >= start].reset_index(drop=True)
    if tickers:
        feats = feats[feats["ticker"].isin([t.upper() for t in tickers])].reset_index(drop=True)
    if probabilities is not None:
        missing = [c for c in ("ticker", "ts", "probability") if c not in probabilities.columns]
        if missing:
            raise PredictionsError(f"probabilities are missing column(s): {', '.join(missing)}")
        probs = probabilities[["ticker", "ts", "probability"]].copy()
        probs["ticker"] = probs["ticker"].astype(str).str.upper()
        probs["ts"] = pd.to_datetime(probs["ts"], utc=True)
        probs = probs.drop_duplicates(["ticker", "ts"], keep="last")
        merged = feats.drop(columns=["probability"], errors="ignore").merge(probs, on=["ticker", "ts"], how="inner")
        if merged.empty:
            raise PredictionsError("no probability matches a bar (ticker, ts) in the requested range")
        source = "precomputed"
    else:
        predictor, version = (model or champion(tracking_uri))()
        merged = feats.assign(probability=score(feats, predictor))
        source = f"model version {version}"
    out = merged[PREDICTION_COLUMNS]
    ok = np.isfinite(out["probability"].to_numpy(np.float64)) & np.isfinite(out["volatility"].to_numpy(np.float64))
    out = out.loc[ok]
    if out.empty:
        raise PredictionsError("no bar has both a probability and a volatility (too few bars per session?)")
    ts_ns = out["ts"].dt.as_unit("ns").astype("int64").to_numpy()
    out = out.iloc[np.lexsort((out["ticker"].to_numpy(), ts_ns))].reset_index(drop=True)
    log.info("%d predictions for %d tickers (%s)", len(out), out["ticker"].nunique(), source,
             extra={"hft": {"predictions": len(out), "source": source}})
    return out, source


__all__ = ["PREDICTION_COLUMNS", "PredictionsError", "champion", "features_for", "load_bars",
           "predictions_from_bars", "score"]
