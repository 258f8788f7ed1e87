"""Predictions from lake bars: the shared features, the model interface, precomputed probabilities."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bar_fixtures import make_bars
from hft.backtest.predictions import PredictionsError, features_for, load_bars, predictions_from_bars
from hft.data.calendar import session_date
from hft.data.lake import BarLake
from hft.features.definitions import FeatureSpec
from hft.model.config import ModelConfig
from hft.model.fast import FastPredictor, _expected_weights
from hft.model.network import Scaler


class LinearModel:
    """A stand-in with the FastPredictor interface: logistic in one feature."""

    features = ["ret_5", "rv_15"]

    def predict_proba(self, x):
        return 1 / (1 + np.exp(300 * x[:, 0]))


@pytest.fixture(scope="module")
def bars():
    return make_bars(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")


def test_predictions_from_bars_model_scores_ready_rows_with_spec_volatility(bars):
    preds, source = predictions_from_bars(bars, model=lambda: (LinearModel(), "4"))
    feats = features_for(bars).set_index(["ticker", "ts"])
    assert source == "model version 4"
    assert list(preds.columns) == ["ticker", "ts", "probability", "close", "volatility"]
    # rv_30 needs 31 bars of the session: 390 - 30 = 360 rows per ticker and session
    assert len(preds) == 2 * 2 * 360
    row = preds.iloc[100]
    f = feats.loc[(row["ticker"], row["ts"])]
    assert row["volatility"] == pytest.approx(f["rv_30"] / math.sqrt(30))
    assert row["probability"] == pytest.approx(1 / (1 + np.exp(300 * f["ret_5"])))
    assert row["close"] == f["close"]
    ts_ns = preds["ts"].astype("int64").to_numpy()
    assert np.all(np.diff(ts_ns) >= 0)


def test_predictions_from_bars_precomputed_probabilities_join_on_ticker_and_ts(bars):
    probs = bars[["ticker", "ts"]].assign(probability=0.7, ticker=bars["ticker"].str.lower()).iloc[::2]
    preds, source = predictions_from_bars(bars, probabilities=probs)
    assert source == "precomputed"
    assert len(preds) == 2 * 2 * 360 // 2
    assert (preds["probability"] == 0.7).all()


def test_predictions_from_bars_probabilities_outside_range_raise_error(bars):
    probs = pd.DataFrame({"ticker": ["AAA"], "ts": [pd.Timestamp("2020-01-02 15:00", tz="UTC")], "probability": [0.6]})
    with pytest.raises(PredictionsError, match="no probability matches"):
        predictions_from_bars(bars, probabilities=probs)


def test_predictions_from_bars_conv1d_model_scores_full_windows_only(bars):
    config = ModelConfig(architecture="conv1d", lookback=4, conv_kernel=2)
    names = FeatureSpec().feature_names()
    weights = [np.zeros(shape) for _, _, shape in _expected_weights(config, len(names))]
    model = FastPredictor(config, names, Scaler(np.zeros(len(names)), np.ones(len(names))), weights)
    preds, _ = predictions_from_bars(bars, model=lambda: (model, "9"))
    # all features exist from bar 31 on; a window of 4 needs 3 more: 390 - 33 rows per ticker and session
    assert len(preds) == 2 * 2 * (390 - 33)
    assert (preds["probability"] == 0.5).all()


def test_a_backtest_of_one_day_reads_the_days_before_for_its_features(tmp_path, bars):
    """The overnight gap and the volume norm read earlier sessions: a backtest from 2024-03-08 gets the same
    features (and so predictions) as one from 2024-03-07 has for 2024-03-08."""
    from hft.features.definitions import CONTEXT_DAYS

    BarLake(str(tmp_path)).write(bars)
    day = pd.Timestamp("2024-03-08").date()
    class Model:
        features = ["overnight_gap", "volume_tod"]

        def predict_proba(self, x):
            return 1 / (1 + np.exp(-300 * x[:, 0] - x[:, 1]))

    model = Model()
    alone = load_bars(str(tmp_path), "1m", None, day, day, CONTEXT_DAYS)
    assert set(session_date(alone["ts"])) == {pd.Timestamp("2024-03-07").date(), day}
    preds, _ = predictions_from_bars(alone, model=lambda: (model, "1"), start=day)
    full, _ = predictions_from_bars(bars, model=lambda: (model, "1"))
    full = full[session_date(full["ts"]) == day].reset_index(drop=True)
    assert len(preds) == len(full) > 0 and session_date(preds["ts"]).min() == day
    pd.testing.assert_frame_equal(preds, full)
    no_context, _ = predictions_from_bars(load_bars(str(tmp_path), "1m", None, day, day), model=lambda: (model, "1"))
    assert not np.allclose(no_context["probability"].to_numpy(), full["probability"].to_numpy())


def test_load_bars_unknown_ticker_raises_error(tmp_path, bars):
    BarLake(str(tmp_path)).write(bars)
    assert len(load_bars(str(tmp_path), "1m", ["aaa"], pd.Timestamp("2024-03-07").date(), pd.Timestamp("2024-03-07").date())) == 390
    with pytest.raises(PredictionsError, match="for: ZZZ"):
        load_bars(str(tmp_path), "1m", ["AAA", "ZZZ"], pd.Timestamp("2024-03-07").date(), pd.Timestamp("2024-03-08").date())


def test_a_backtest_of_some_tickers_reads_the_index_for_their_market_context_and_trades_only_them(tmp_path):
    lake = make_bars(tickers=("AAA", "BBB", "SPY"), start="2024-03-07", end="2024-03-08")
    BarLake(str(tmp_path)).write(lake)
    day = pd.Timestamp("2024-03-08").date()

    class Model:
        features = ["ret_5", "mkt_rel_15"]

        def predict_proba(self, x):
            return 1 / (1 + np.exp(-300 * x[:, 1]))

    read = load_bars(str(tmp_path), "1m", ["AAA"], day, day, spec=FeatureSpec())
    assert set(read["ticker"]) == {"AAA", "SPY"}  # BBB is not read
    preds, _ = predictions_from_bars(read, model=lambda: (Model(), "1"), tickers=["AAA"])
    full, _ = predictions_from_bars(lake[session_date(lake["ts"]) == day], model=lambda: (Model(), "1"))
    full = full[full["ticker"] == "AAA"].reset_index(drop=True)
    assert set(preds["ticker"]) == {"AAA"} and len(preds) == len(full) > 300
    pd.testing.assert_frame_equal(preds, full)
    without, _ = predictions_from_bars(load_bars(str(tmp_path), "1m", ["AAA"], day, day), model=lambda: (Model(), "1"))
    assert not np.allclose(without["probability"].to_numpy(), full["probability"].to_numpy())  # SPY mattered
