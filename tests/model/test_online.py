"""Online learning: the champion warm-started on the newest sessions, through the same gate; on a synthetic
market whose regime changes, daily retraining recovers the AUC a frozen champion loses."""

from __future__ import annotations

import dataclasses
from datetime import date, datetime, timezone

import numpy as np
import pytest
from model_fixtures import FAST, TICKERS

from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource
from hft.features.reference import compute_features
from hft.model.dataset import DatasetError, prepare
from hft.model.network import Scaler, WeightsFile
from hft.model.online import replay, replay_table, warm_start
from hft.model.training import train

#: ~40 s (a champion, then ten days of retraining): in `make test-slow`; `make test` warm-starts through the
#: model_retraining DAG (tests/integration/test_airflow_rest.py).
pytestmark = pytest.mark.slow

CHANGE = date(2024, 2, 1)  # from this session on the market trends where it used to revert


@pytest.fixture(scope="module")
def regime_change():
    """Mean reversion (p=0.3) until CHANGE, trend-following (p=-0.3) after; and a champion trained before it."""
    config = SyntheticConfig(predictability=0.3, seed=5, regime_change=CHANGE, predictability_after=-0.3)
    bars = SyntheticSource(config).fetch(TICKERS, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                         datetime(2024, 2, 16, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars))
    champion = train(frame[frame["date"] < CHANGE].reset_index(drop=True), features, FAST)
    start = WeightsFile(champion.config, features, champion.scaler, champion.model.get_weights(), [])
    return frame, features, champion, start


def test_warm_start_trains_the_champion_on_the_newest_sessions_and_holds_out_the_last(regime_change):
    frame, features, champion, start = regime_change
    before = [w.copy() for w in champion.model.get_weights()]
    window = frame[frame["date"] < date(2024, 2, 9)]
    result = warm_start(window, champion.model, start, sessions=5, epochs=2)
    dates = sorted(window["date"].unique())
    assert sorted(result.holdout["date"].unique()) == [dates[-1]]
    assert result.train_rows == int(window["date"].isin(dates[-5:-1]).sum())  # the night is longer than the embargo
    assert result.folds == [] and result.epochs == 2 and result.economics is None
    assert {"logistic_regression", "gradient_boosted_trees"} <= set(result.evaluation.scores)
    assert result.scaler is start.scaler and result.config == champion.config
    # the champion is left as it was; the warm-started copy moved from it
    assert all(np.array_equal(a, b) for a, b in zip(before, champion.model.get_weights()))
    assert not all(np.array_equal(a, b) for a, b in zip(before, result.model.get_weights()))
    with pytest.raises(DatasetError, match="needs them"):
        warm_start(window[window["date"] >= dates[-3]], champion.model, start, sessions=5)
    other = dataclasses.replace(start, features=[*features, "not_a_feature"], scaler=Scaler(np.zeros(1), np.ones(1)))
    with pytest.raises(DatasetError, match="not_a_feature"):
        warm_start(window, champion.model, other, sessions=5)


def test_daily_retraining_recovers_the_auc_a_frozen_champion_loses_after_a_regime_change(regime_change):
    frame, _, champion, start = regime_change
    days = replay(frame, champion.model, start, days=10, sessions=5, epochs=3, resamples=200)
    print("\n" + replay_table(days))
    assert [d.date for d in days] == [str(x) for x in sorted(frame["date"].unique())[-10:]]
    assert all(date.fromisoformat(d.date) > CHANGE for d in days)
    frozen = np.array([d.frozen_auc for d in days])
    online = np.array([d.online_auc for d in days])
    assert frozen.max() < 0.5  # the champion got the new market backwards, every day
    assert any(d.promoted for d in days) and not days[0].promoted  # the first evening had one new session only
    assert online[-5:].mean() > 0.53 and (online[-5:] > 0.5).all()  # recovered, and stays recovered
    assert (online - frozen)[-5:].min() > 0.05
    first = next(i for i, d in enumerate(days) if d.online_auc > 0.5)
    assert first <= 5  # within a week of sessions
