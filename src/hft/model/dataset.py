"""Model inputs from the feature table: checks, ordering, time-based splits with purge and embargo."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from hft.errors import HftError
from hft.features.definitions import FeatureSpec

log = logging.getLogger(__name__)


class DatasetError(HftError, ValueError):
    """The feature table cannot be used for training (missing columns, empty, too short...)."""


REQUIRED = ("ticker", "ts", "date", "label")


#: Written by the feature job beside each interval's feature table: ``{"horizon_minutes": N}``, the label
#: horizon the table was computed with (pyarrow and Spark skip names starting with ``_``).
LABEL_FILE = "_label.json"


def write_label_horizon(features_root: str, interval: str, minutes: int) -> None:
    """Record the label horizon of ``features_root``'s ``interval`` table."""
    import json

    from hft.data.lake import filesystem

    fs, local = filesystem(f"{features_root.rstrip('/')}/interval={interval}")
    fs.create_dir(local, recursive=True)
    with fs.open_output_stream(f"{local}/{LABEL_FILE}") as f:
        f.write(json.dumps({"horizon_minutes": int(minutes)}).encode())


def label_horizon(path: str, interval: str = "1m") -> int | None:
    """The label horizon (minutes) recorded for the feature table at ``path``, or None (none recorded)."""
    import json

    import pyarrow.fs as pafs

    from hft.data.lake import filesystem

    for candidate in (f"{path.rstrip('/')}/interval={interval}", path.rstrip("/")):
        fs, local = filesystem(f"{candidate}/{LABEL_FILE}")
        if fs.get_file_info(local).type == pafs.FileType.File:
            with fs.open_input_stream(local) as f:
                return int(json.loads(f.read())["horizon_minutes"])
    return None


def load_feature_table(path: str, interval: str = "1m") -> pd.DataFrame:
    """Read a feature table: ``<features root>`` (its ``interval=<interval>`` part) or a Parquet folder."""
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from hft.data.lake import filesystem

    root = path.rstrip("/")
    fs, local = filesystem(f"{root}/interval={interval}")
    if fs.get_file_info(local).type != pafs.FileType.Directory:
        fs, local = filesystem(root)
    if fs.get_file_info(local).type == pafs.FileType.NotFound:
        raise DatasetError(f"no feature table at {path} (run `hft features` first)")
    try:
        table = ds.dataset(local, filesystem=fs, format="parquet", partitioning="hive").to_table()
    except (OSError, ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid/ArrowIOError subclass these
        raise DatasetError(f"cannot read feature table at {path}: {exc}") from None
    frame = table.to_pandas()
    for col in ("ticker", "interval"):
        if col in frame:
            frame[col] = frame[col].astype(str)
    if "date" in frame:
        frame["date"] = pd.to_datetime(frame["date"].astype(str)).dt.date
    return frame


def prepare(table: pd.DataFrame, features: list[str] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Check the table and keep rows with every feature and a label, sorted by (ts, ticker).

    Raises :class:`DatasetError` naming missing columns, or when nothing usable is left. Rows with a
    null, NaN or infinite feature are dropped and counted (the early bars of each session have them).
    """
    features = list(features or FeatureSpec.from_env().feature_names())
    missing = [c for c in (*REQUIRED, *features) if c not in table.columns]
    if missing:
        raise DatasetError(f"feature table is missing column(s): {', '.join(missing)}")
    if table.empty:
        raise DatasetError("feature table is empty")
    values = table[features].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(values).all(axis=1)
    labelled = table["label"].isin([0, 1]).to_numpy()
    kept = table.loc[finite & labelled].copy()
    dropped = len(table) - len(kept)
    if dropped:
        log.info("dropped %d of %d rows with missing or non-finite features/labels", dropped, len(table),
                 extra={"hft": {"rows_dropped": dropped, "rows_total": len(table)}})
    if kept.empty:
        raise DatasetError(f"no usable rows: all {len(table)} rows have a missing or non-finite feature or label")
    if kept["label"].nunique() < 2:
        raise DatasetError("labels have a single class; cannot train a direction model")
    kept["ts"] = pd.to_datetime(kept["ts"], utc=True)
    kept = kept.sort_values(["ts", "ticker"], kind="stable").reset_index(drop=True)
    return kept, features


@dataclass(frozen=True)
class Split:
    """Row positions of one train/validation split (into a frame sorted by ts)."""

    train: np.ndarray
    valid: np.ndarray


def holdout_split(frame: pd.DataFrame, fraction: float, embargo_minutes: int) -> Split:
    """Latest ``fraction`` of sessions as the holdout; training rows whose label window reaches into it
    (``ts + embargo > first holdout bar``) are purged."""
    dates = np.array(sorted(frame["date"].unique()))
    n_hold = max(1, int(round(len(dates) * fraction)))
    if n_hold >= len(dates):
        raise DatasetError(f"need at least 2 sessions to hold one out, got {len(dates)}")
    first_hold = dates[-n_hold]
    hold = frame["date"].to_numpy() >= first_hold
    return _purged(frame, ~hold, hold, embargo_minutes)


def walk_forward(frame: pd.DataFrame, folds: int, embargo_minutes: int) -> list[Split]:
    """Expanding-window folds over sessions: fold k trains on sessions before block k and validates on
    block k (blocks are the last ``folds`` equal slices of the sessions after a first training block)."""
    dates = np.array(sorted(frame["date"].unique()))
    if len(dates) < folds + 1:
        raise DatasetError(f"need at least {folds + 1} sessions for {folds} walk-forward folds, got {len(dates)}")
    edges = np.linspace(0, len(dates), folds + 2).round().astype(int)[1:]
    day = frame["date"].to_numpy()
    splits = []
    for k in range(folds):
        lo, hi = dates[edges[k]], dates[edges[k + 1] - 1]
        valid = (day >= lo) & (day <= hi)
        train = day < lo
        splits.append(_purged(frame, train, valid, embargo_minutes))
    return splits


def _purged(frame: pd.DataFrame, train: np.ndarray, valid: np.ndarray, embargo_minutes: int) -> Split:
    ts = frame["ts"].to_numpy()
    start = ts[valid].min()
    cutoff = start - np.timedelta64(embargo_minutes, "m")
    keep = train & (ts < cutoff)  # a training label (t, t + horizon] never reaches the validation block
    purged = int(train.sum() - keep.sum())
    if purged:
        log.debug("purged %d training rows within %d minutes of the validation block", purged, embargo_minutes)
    return Split(train=np.flatnonzero(keep), valid=np.flatnonzero(valid))
