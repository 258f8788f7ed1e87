"""Model inputs: clear errors for bad tables, time-ordered splits with purge and embargo."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from hft.model.dataset import DatasetError, holdout_split, load_feature_table, prepare, walk_forward


def test_prepare_missing_columns_named(predictable_table):
    with pytest.raises(DatasetError, match="missing column.*rv_5"):
        prepare(predictable_table.drop(columns=["rv_5", "label"]))


def test_prepare_empty_table_raises(predictable_table):
    with pytest.raises(DatasetError, match="empty"):
        prepare(predictable_table.iloc[:0])


def test_prepare_drops_nan_and_infinite_rows_and_sorts_by_time(predictable_table):
    t = predictable_table.copy()
    t.loc[t.index[40], "rv_5"] = np.inf
    frame, features = prepare(t)
    assert np.isfinite(frame[features].to_numpy()).all()
    assert frame["ts"].is_monotonic_increasing
    assert len(frame) == len(t.dropna(subset=features)) - 1


def test_prepare_all_nan_raises(predictable_table):
    t = predictable_table.head(100).copy()
    t["rv_5"] = np.nan
    with pytest.raises(DatasetError, match="no usable rows"):
        prepare(t)


def test_prepare_single_class_raises(predictable_table):
    t = predictable_table.copy()
    t["label"] = 1
    with pytest.raises(DatasetError, match="single class"):
        prepare(t)


def test_holdout_split_is_latest_sessions_and_purged(predictable_table):
    frame, _ = prepare(predictable_table)
    split = holdout_split(frame, 0.25, embargo_minutes=5)
    train_ts, hold_ts = frame["ts"].iloc[split.train], frame["ts"].iloc[split.valid]
    assert train_ts.max() + pd.Timedelta(minutes=5) < hold_ts.min()
    assert set(frame["date"].iloc[split.train]).isdisjoint(set(frame["date"].iloc[split.valid]))
    assert len(split.train) + len(split.valid) <= len(frame)


def test_purge_drops_training_labels_reaching_into_validation(predictable_table):
    frame, _ = prepare(predictable_table)
    # An intraday cut: validation starts mid-session, so the purge must remove the 5 minutes before it.
    day = frame["date"].iloc[len(frame) // 2]
    from hft.model.dataset import _purged

    cut = frame.loc[frame["date"] == day, "ts"].iloc[200]
    train = (frame["ts"] < cut).to_numpy()
    valid = (frame["ts"] >= cut).to_numpy()
    split = _purged(frame, train, valid, embargo_minutes=5)
    kept = frame["ts"].iloc[split.train]
    assert kept.max() < cut - pd.Timedelta(minutes=5)
    assert (frame["ts"][train] >= cut - pd.Timedelta(minutes=5)).sum() > 0  # there was something to purge


def test_walk_forward_folds_expand_and_never_look_ahead(predictable_table):
    frame, _ = prepare(predictable_table)
    folds = walk_forward(frame, 3, embargo_minutes=5)
    assert len(folds) == 3
    sizes = [len(f.train) for f in folds]
    assert sizes == sorted(sizes) and sizes[0] > 0
    for f in folds:
        assert frame["ts"].iloc[f.train].max() < frame["ts"].iloc[f.valid].min()


def test_walk_forward_too_few_sessions_raises(predictable_table):
    frame, _ = prepare(predictable_table)
    one_day = frame[frame["date"] == frame["date"].iloc[0]]
    with pytest.raises(DatasetError, match="sessions"):
        walk_forward(one_day, 3, 5)


def test_load_feature_table_missing_path_raises(tmp_path):
    with pytest.raises(DatasetError, match="no feature table"):
        load_feature_table(str(tmp_path / "nothing"))


def test_load_feature_table_reads_partitioned_output(tmp_path, predictable_table):
    t = predictable_table.head(500).copy()
    root = tmp_path / "features" / "interval=1m"
    for ticker, part in t.groupby("ticker"):
        d = root / f"ticker={ticker}" / "date=2024-01-02"
        d.mkdir(parents=True)
        part.drop(columns=["ticker", "date", "interval"]).to_parquet(d / "part-0.parquet")
    back = load_feature_table(str(tmp_path / "features"))
    assert len(back) == 500 and set(back["ticker"]) == set(t["ticker"])
