"""Validation of bars with Great Expectations 1.x, before anything reaches the clean lake.

The suite (:func:`bar_suite`) checks the schema, nulls, prices in ``[MIN_PRICE, MAX_PRICE]``, OHLC
consistency, volume (float64 shares, fractional allowed) in ``[0, MAX_VOLUME]``, unique (ticker, ts), bar
timestamps aligned to the interval and inside exchange sessions, and bounded gaps between consecutive bars of
a session. The session and gap checks run on derived columns computed here (``in_session``, ``aligned``,
``gap_minutes``), because they need the exchange calendar.

The verdict is per ticker: a ticker with any failing row is rejected as a whole (its batch goes to
quarantine with the report), the other tickers pass.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hft.data.calendar import in_session, session_date
from hft.schemas import BAR_COLUMNS, MAX_PRICE, MAX_VOLUME, MIN_PRICE, Interval

log = logging.getLogger(__name__)

#: Upper bound for any price: catches infinities and unit mix-ups (no listed share trades near it).

os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


@dataclass(frozen=True)
class ExpectationFailure:
    expectation: str
    column: str
    unexpected_count: int
    unexpected_by_ticker: dict[str, int]

    def describe(self) -> str:
        return f"{self.expectation}({self.column}): {self.unexpected_count} row(s)"


@dataclass(frozen=True)
class ValidationReport:
    """Outcome of validating one batch of bars."""

    rows: int
    failures: tuple[ExpectationFailure, ...]
    rejected_tickers: tuple[str, ...]
    evaluated: int
    details: dict = field(default_factory=dict, compare=False)

    @property
    def success(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        if self.success:
            return f"{self.rows} bars passed {self.evaluated} expectations"
        failed = "; ".join(f.describe() for f in self.failures)
        return (
            f"{len(self.failures)} of {self.evaluated} expectations failed on {self.rows} bars "
            f"(tickers rejected: {', '.join(self.rejected_tickers)}): {failed}"
        )

    def to_dict(self) -> dict:
        return {
            "success": self.success,
            "rows": self.rows,
            "evaluated_expectations": self.evaluated,
            "rejected_tickers": list(self.rejected_tickers),
            "failures": [
                {
                    "expectation": f.expectation,
                    "column": f.column,
                    "unexpected_count": f.unexpected_count,
                    "unexpected_by_ticker": f.unexpected_by_ticker,
                }
                for f in self.failures
            ],
        }


def with_derived_columns(bars: pd.DataFrame, extended_hours: bool = False) -> pd.DataFrame:
    """Bars plus ``in_session``, ``aligned`` and ``gap_minutes`` (null on a session's first bar)."""
    df = bars.reset_index(drop=True).copy()
    ts = pd.to_datetime(df["ts"], utc=True, errors="coerce")
    valid_ts = ts.notna()
    df["in_session"] = False
    df["aligned"] = False
    df["gap_minutes"] = np.nan
    if not valid_ts.any():
        return df
    good = df.index[valid_ts]
    ts_good = ts[valid_ts].dt.as_unit("us")
    intervals = df.loc[good, "interval"]
    intraday = intervals.isin([i.value for i in Interval if i.intraday]).to_numpy()
    minutes = intervals.map({i.value: i.minutes for i in Interval}).fillna(1).to_numpy(np.int64)
    # Daily bars carry the session date; their timestamp is the session's open, which in_session accepts.
    df.loc[good, "in_session"] = in_session(ts_good, extended=extended_hours)
    micros = ts_good.astype("int64").to_numpy()
    exact_minute = micros % 60_000_000 == 0
    on_grid = (micros // 60_000_000) % minutes == 0
    df.loc[good, "aligned"] = exact_minute & (~intraday | on_grid)
    order = pd.DataFrame(
        {"ticker": df.loc[good, "ticker"].to_numpy(), "interval": df.loc[good, "interval"].to_numpy(),
         "date": session_date(ts_good), "ts": ts_good.to_numpy()},
        index=good,
    ).sort_values(["ticker", "interval", "ts"])
    gaps = order.groupby(["ticker", "interval", "date"], sort=False)["ts"].diff().dt.total_seconds() / 60.0
    df.loc[order.index, "gap_minutes"] = np.where(intraday[good.get_indexer(order.index)], gaps.to_numpy(), np.nan)
    return df


def bar_suite(max_gap_minutes: int):
    """The expectation suite every batch of bars must pass."""
    import great_expectations as gx

    E = gx.expectations
    suite = gx.ExpectationSuite(name="bars")
    columns = [*BAR_COLUMNS, "in_session", "aligned", "gap_minutes"]
    suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=columns, exact_match=True))
    for col in BAR_COLUMNS:
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="interval", value_set=[i.value for i in Interval]))
    for col in ("open", "high", "low", "close"):
        suite.add_expectation(
            E.ExpectColumnValuesToBeBetween(column=col, min_value=MIN_PRICE, max_value=MAX_PRICE)
        )
    for other in ("open", "close", "low"):
        suite.add_expectation(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A="high", column_B=other, or_equal=True))
    for other in ("open", "close"):
        suite.add_expectation(E.ExpectColumnPairValuesAToBeGreaterThanB(column_A=other, column_B="low", or_equal=True))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="volume", min_value=0, max_value=MAX_VOLUME))
    suite.add_expectation(E.ExpectCompoundColumnsToBeUnique(column_list=["ticker", "interval", "ts"]))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="in_session", value_set=[True]))
    suite.add_expectation(E.ExpectColumnValuesToBeInSet(column="aligned", value_set=[True]))
    suite.add_expectation(E.ExpectColumnValuesToBeBetween(column="gap_minutes", min_value=0, max_value=max_gap_minutes))
    return suite


def validate_bars(bars: pd.DataFrame, max_gap_minutes: int = 60, extended_hours: bool = False) -> ValidationReport:
    """Run the suite on ``bars`` (canonical layout) and say which tickers fail and why."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    frame = with_derived_columns(bars, extended_hours=extended_hours)
    if frame.empty:
        return ValidationReport(rows=0, failures=(), rejected_tickers=(), evaluated=0)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_def = (
        context.data_sources.add_pandas("bars").add_dataframe_asset("bars").add_batch_definition_whole_dataframe("all")
    )
    suite = context.suites.add(bar_suite(max_gap_minutes))
    result = batch_def.get_batch(batch_parameters={"dataframe": frame}).validate(
        suite, result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["ticker"]}
    )
    failures: list[ExpectationFailure] = []
    rejected: set[str] = set()
    all_tickers = sorted(frame["ticker"].astype(str).unique())
    for er in result.results:
        if er.success:
            continue
        cfg = er.expectation_config
        assert cfg is not None  # a suite's results carry their expectation
        kwargs = cfg.kwargs
        column = kwargs.get("column") or ",".join(
            filter(None, [kwargs.get("column_A"), kwargs.get("column_B")] + list(kwargs.get("column_list") or []))
        )
        by_ticker: dict[str, int] = defaultdict(int)
        for item in er.result.get("unexpected_index_list") or []:
            by_ticker[str(item.get("ticker"))] += 1
        if not by_ticker:  # table-level failure (e.g. schema): every ticker is affected
            by_ticker = {t: int(er.result.get("unexpected_count") or 0) for t in all_tickers}
        rejected.update(by_ticker)
        failures.append(
            ExpectationFailure(
                expectation=cfg.type,
                column=column,
                unexpected_count=int(er.result.get("unexpected_count") or sum(by_ticker.values())),
                unexpected_by_ticker=dict(by_ticker),
            )
        )
    report = ValidationReport(
        rows=len(frame),
        failures=tuple(failures),
        rejected_tickers=tuple(sorted(rejected)),
        evaluated=len(result.results),
    )
    log.info("validated bars: %s", report.summary(), extra={"hft": {"rows": report.rows, "failed_expectations": len(failures)}})
    return report
