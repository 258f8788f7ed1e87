"""Record layouts shared by every part of the system.

A *bar* is one OHLCV candle of one ticker. Every source returns bars as a pandas DataFrame with exactly
:data:`BAR_COLUMNS`, in that order, typed as :data:`BAR_ARROW_SCHEMA`, timestamps in UTC marking the bar's
*start*. Past ``hft.data.sources`` nothing knows a vendor format.

**Volume is a float64 number of shares, everywhere** (sources, lake, validation, features, Kafka messages,
Redis state). Since about February 2026 Yahoo returns fractional 1-minute volumes (``88305.015766``), so a
whole-number type would refuse real data; float64 holds every whole volume up to 2**53 exactly, so whole
volumes round-trip unchanged. Lakes written before this change hold int64 volumes: readers cast them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa

from hft.errors import HftError

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql.types import StructType


class Interval(str, enum.Enum):
    """Bar length. The value is the yfinance spelling."""

    M1 = "1m"
    M5 = "5m"
    D1 = "1d"

    @property
    def minutes(self) -> int:
        return {"1m": 1, "5m": 5, "1d": 390}[self.value]

    @property
    def intraday(self) -> bool:
        return self is not Interval.D1

    @classmethod
    def parse(cls, value: "str | Interval") -> "Interval":
        if isinstance(value, Interval):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            allowed = ", ".join(i.value for i in cls)
            raise ValueError(f"unknown interval {value!r}; expected one of: {allowed}") from None


BAR_COLUMNS: tuple[str, ...] = ("ticker", "ts", "interval", "open", "high", "low", "close", "volume")
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close")

#: Plausible values of a bar, enforced by validation (lake) and by the message decoder (stream) alike.
#: Prices in [MIN_PRICE, MAX_PRICE] keep every log ratio of the features finite (a sub-penny stock trades at
#: 0.0001); volumes in [0, MAX_VOLUME] keep the volume z-score's sums finite.
MIN_PRICE = 1e-4
MAX_PRICE = 1e7
MAX_VOLUME = 1e15

BAR_ARROW_SCHEMA = pa.schema(
    [
        pa.field("ticker", pa.string(), nullable=False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),
    ]
)

#: Spark DDL of a bar row (timestamps are Spark TIMESTAMP, i.e. UTC instants).
BAR_SPARK_DDL = (
    "ticker STRING, ts TIMESTAMP, interval STRING, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE"
)


def bar_end_ns(bar_ts_ns, interval: "str | Interval"):
    """When a bar starting at ``bar_ts_ns`` (epoch ns; an int or an int64 array) ends: the earliest moment its
    close, and so a prediction from it, exists. The executor's clock for a prediction, live and in backtests."""
    return bar_ts_ns + Interval.parse(interval).minutes * 60_000_000_000


def correlation_id(ticker: str, bar_end: int) -> str:
    """The id that follows one bar from its collector to the fills it caused, in every log and event:
    ``<TICKER>@<bar end, epoch ms>`` (the bar's end: the one time the executor, the stream and the collector
    all know; :func:`bar_end_ns` gives it from the start). ``bar_end`` is epoch **ns**."""
    return f"{ticker.upper()}@{int(bar_end) // 1_000_000}"


@dataclass(frozen=True)
class Prediction:
    """One model prediction for one bar: the record the streaming job writes (Redis hash and stream, Kafka
    ``predictions``), the executor service reads and the backtest replays.

    ``ts_ms`` is the bar's **start** (epoch ms), as every bar time in the system; the prediction becomes
    possible at the bar's **end** (:attr:`available_ns`, :func:`bar_end_ns`), which is the time the executor
    decides it at, live and in backtests alike."""

    ticker: str
    interval: str
    ts_ms: int
    probability: float
    model_version: str
    produced_ns: int | None
    predicted_ns: int
    close: float = float("nan")       # the bar's close: the executor's market price
    volatility: float = float("nan")  # per-bar volatility (FeatureSpec.per_bar_volatility): position sizing

    @property
    def available_ns(self) -> int:
        return bar_end_ns(self.ts_ms * 1_000_000, self.interval)

    @property
    def correlation_id(self) -> str:
        return correlation_id(self.ticker, self.available_ns)


def bar_spark_schema() -> "StructType":
    from pyspark.sql.types import StructType

    schema = StructType.fromDDL(BAR_SPARK_DDL)
    assert isinstance(schema, StructType)
    return schema


class SchemaError(HftError, ValueError):
    """A frame does not have the bar layout."""


def empty_bars() -> pd.DataFrame:
    return BAR_ARROW_SCHEMA.empty_table().to_pandas()


def coerce_bars(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` in the canonical bar layout (column order, dtypes, UTC timestamps).

    Raises :class:`SchemaError` naming the missing columns or the column that cannot be converted.
    Values are not judged here (that is validation's job); only their types are.
    """
    missing = [c for c in BAR_COLUMNS if c not in frame.columns]
    if missing:
        raise SchemaError(f"bars are missing column(s): {', '.join(missing)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    out["ticker"] = frame["ticker"].astype(str).to_numpy()
    try:
        ts = pd.to_datetime(frame["ts"], utc=True)
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"column 'ts' is not a timestamp: {exc}") from None
    out["ts"] = ts.dt.as_unit("us").reset_index(drop=True)
    out["interval"] = frame["interval"].astype(str).to_numpy()
    for col in PRICE_COLUMNS:
        try:
            out[col] = pd.to_numeric(frame[col], errors="raise").astype(np.float64).to_numpy()
        except (ValueError, TypeError) as exc:
            raise SchemaError(f"column {col!r} is not numeric: {exc}") from None
    try:
        # Nulls and non-finite or negative volumes stay visible to validation instead of being invented.
        out["volume"] = pd.to_numeric(frame["volume"], errors="raise").astype(np.float64).to_numpy()
    except (ValueError, TypeError) as exc:
        raise SchemaError(f"column 'volume' is not numeric: {exc}") from None
    return out


def bars_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Canonical bars as an Arrow table with :data:`BAR_ARROW_SCHEMA`."""
    return pa.Table.from_pandas(coerce_bars(frame), schema=BAR_ARROW_SCHEMA, preserve_index=False)


@dataclass(frozen=True)
class RedisKeys:
    """Every Redis key of the system, under one ``prefix`` (default ``hft``): defined here only.

    Streaming job (:mod:`hft.streaming.store`): ``predictions`` (stream), ``latest(ticker)`` (hash),
    ``pred_written`` (hash: series -> newest bar time written), ``state(interval, ticker)`` (hash: the
    feature state's bars), ``session_gaps`` (hash: series -> its session's overnight gap), ``volume(interval,
    ticker)`` (hash: day -> the series' volume totals), ``heartbeat``,
    ``last_batch``, ``offsets`` (hash: topic:partition -> next offset).
    Executor (:mod:`hft.execution.service`): ``orders`` (stream), ``positions``, ``exec_state`` (hashes),
    ``exec_published`` (publication cursor), ``exec_halt`` (kill switch), ``exec_silent_venues``.
    Executor hot standby (:mod:`hft.execution.leader`): ``exec_leader`` (the lease), ``exec_epoch`` (fencing
    epochs), ``exec_journal`` (stream: the replicated journal), ``exec_journal_records``, ``exec_instruments``.

    ``shard`` (:mod:`hft.execution.shards`): the executor keys of one shard of the tickers (its state, cursor,
    lease, journal, instrument table and consumer group ``exec_group``) get ``:<shard>`` appended; the predictions,
    orders, positions, kill switch, venues and the shards' shared risk (``exec_risk``, ``exec_members``) are
    everyone's."""

    prefix: str = "hft"
    shard: str = ""

    def _own(self, key: str) -> str:
        return f"{key}:{self.shard}" if self.shard else key

    @property
    def exec_group(self) -> str:
        """The executor's consumer group of the predictions stream (one per shard)."""
        return self._own("executor")

    @property
    def exec_risk(self) -> str:
        """A hash: each shard's gross exposure, day and day PnL (``gross:<shard>``, ``day:<shard>``, ``pnl:<shard>``)."""
        return f"{self.prefix}:exec:risk"

    @property
    def exec_members(self) -> str:
        """A sorted set: the sharded executor instances alive (score: their last heartbeat, ms)."""
        return f"{self.prefix}:exec:members"

    @property
    def exec_resume_seq(self) -> str:
        """How many times the kill switch was released (each executor resumes once per release)."""
        return f"{self.prefix}:exec:resume_seq"

    @property
    def predictions(self) -> str:
        return f"{self.prefix}:predictions"

    @property
    def latest_prefix(self) -> str:
        return f"{self.prefix}:pred:latest:"

    def latest(self, ticker: str) -> str:
        return self.latest_prefix + ticker

    @property
    def pred_written(self) -> str:
        return f"{self.prefix}:pred:written"

    def state(self, interval: str, ticker: str) -> str:
        return f"{self.prefix}:state:{interval}:{ticker}"

    def volume(self, interval: str, ticker: str) -> str:
        """A hash: session day number -> the day's volume totals per slice of the session (``{slice: [sum, bars]}``)."""
        return f"{self.prefix}:volume:{interval}:{ticker}"

    @property
    def session_gaps(self) -> str:
        """A hash: ``{interval}:{ticker}`` -> ``[session day, overnight gap]`` of the series' newest session."""
        return f"{self.prefix}:stream:session_gaps"

    @property
    def heartbeat(self) -> str:
        return f"{self.prefix}:stream:heartbeat"

    @property
    def last_batch(self) -> str:
        return f"{self.prefix}:stream:last_batch"

    @property
    def offsets(self) -> str:
        return f"{self.prefix}:stream:offsets"

    @property
    def orders(self) -> str:
        return f"{self.prefix}:orders"

    @property
    def positions(self) -> str:
        return f"{self.prefix}:positions"

    @property
    def exec_state(self) -> str:
        return self._own(f"{self.prefix}:exec:state")

    @property
    def exec_published(self) -> str:
        return self._own(f"{self.prefix}:exec:published")

    @property
    def exec_halt(self) -> str:
        return f"{self.prefix}:exec:halt"

    @property
    def exec_silent_venues(self) -> str:
        """A set: the venues (``HFT_EXEC_VENUES`` names) the executor treats as not answering."""
        return f"{self.prefix}:exec:venues:silent"

    @property
    def exec_leader(self) -> str:
        return self._own(f"{self.prefix}:exec:leader")

    @property
    def exec_epoch(self) -> str:
        return self._own(f"{self.prefix}:exec:epoch")

    @property
    def exec_journal(self) -> str:
        return self._own(f"{self.prefix}:exec:journal")

    @property
    def exec_journal_records(self) -> str:
        return self._own(f"{self.prefix}:exec:journal:records")

    @property
    def exec_instruments(self) -> str:
        return self._own(f"{self.prefix}:exec:instruments")
