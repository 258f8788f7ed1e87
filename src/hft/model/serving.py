"""The registered model as MLflow serves it: a pyfunc over ``model_weights.h5`` and :class:`FastPredictor`.

``mlflow models serve -m models:/hft-direction@champion --env-manager local`` loads this class; a scoring
request carries the bars' raw feature columns (named as in ``features.json``; ``conv1d`` models also need
``ticker``, ``date`` and ``ts`` to build each row's window) and gets back ``probability`` = P(up over the next
5 minutes) per row, computed by the same code and weights as the streaming job (NaN where a ``conv1d`` row
has no full window yet). The Keras network itself is logged beside it as ``keras_model``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel


class DirectionModel(PythonModel):
    def load_context(self, context) -> None:
        from hft.model.fast import FastPredictor

        self.predictor = FastPredictor.from_weights_file(context.artifacts["weights"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        return pd.DataFrame({"probability": score(self.predictor, pd.DataFrame(model_input))})


def score(predictor, frame: pd.DataFrame) -> np.ndarray:
    """P(up) for each row of ``frame`` (raw feature columns), NaN where a window model has no full window."""
    from hft.model.training import model_inputs

    x, rows = model_inputs(frame, predictor.features, predictor.config, scaler=None)
    out = np.full(len(frame), np.nan)
    if len(rows):
        out[rows] = predictor.predict_proba(x)
    return out


def input_columns(predictor) -> list[str]:
    """The columns a scoring request needs."""
    keys = [] if predictor.config.architecture == "mlp" else ["ticker", "date", "ts"]
    return [*keys, *predictor.features]


def request_frame(frame: pd.DataFrame, predictor) -> pd.DataFrame:
    """``frame``'s rows as a scoring request carries them: the input columns, ``date`` as text and ``ts`` as
    naive UTC (MLflow's schema has no time zones)."""
    out = frame[input_columns(predictor)].copy()
    if "date" in out:
        out["date"] = out["date"].astype(str)
    if "ts" in out and getattr(out["ts"].dtype, "tz", None) is not None:
        out["ts"] = out["ts"].dt.tz_convert("UTC").dt.tz_localize(None)
    return out
