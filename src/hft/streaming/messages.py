"""Kafka messages of the real-time path: an explicit, versioned JSON schema per topic.

``market.bars`` (key = ticker)::

    {"schema": "hft.bar", "version": 1, "ticker": "SPY", "interval": "1m",
     "ts": "2024-03-08T14:30:00Z", "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 100.5,
     "produced_ns": 1709908200000000000}

``ts`` is the bar start (ISO-8601 UTC, or epoch milliseconds as an integer), between
:data:`MIN_BAR_TS_MS` (2000-01-01) and the wall clock plus :data:`FUTURE_TOLERANCE_MS`; ``volume`` is a
number of shares, fractional allowed (see :mod:`hft.schemas`); prices and volume within the bounds of
:mod:`hft.schemas`; ``produced_ns`` (optional, a 64-bit integer) is the collector's wall clock when it sent
the bar, for end-to-end latency.

``market.bars.dlq`` (key = original key): ``{"schema": "hft.dlq", "version": 1, "reason": "...",
"detail": "...", "topic", "partition", "offset", "key", "value"}`` with the original bytes kept
(UTF-8 when possible, else base64 under ``value_b64``).

``predictions`` (key = ticker): ``{"schema": "hft.prediction", "version": 1, "ticker", "interval", "ts",
"probability", "model_version", "produced_ns", "predicted_ns", "close", "volatility"}``: a
:class:`hft.schemas.Prediction`, ``ts`` its bar's start.

:func:`decode_bar` accepts a message only when every check passes; otherwise it raises
:class:`MessageError` with a machine-readable ``reason`` (the DLQ and the rejection metric use it).
"""

from __future__ import annotations

import base64
import json
import math
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import msgspec

from hft.config import TICKER_PATTERN
from hft.errors import HftError
from hft.schemas import MAX_PRICE, MAX_VOLUME, MIN_PRICE, Interval, Prediction, bar_end_ns, correlation_id

BAR_SCHEMA, BAR_VERSION = "hft.bar", 1
DLQ_SCHEMA, PREDICTION_SCHEMA = "hft.dlq", "hft.prediction"
MAX_MESSAGE_BYTES = 4096
INTERVALS = ("1m", "5m")
#: Every reason a message goes to the DLQ with (decoding, the feature state, the processor).
DLQ_REASONS = ("empty", "oversized", "not_json", "wrong_schema", "wrong_version", "invalid_field", "non_finite",
               "bad_price", "inconsistent_ohlc", "unknown_ticker", "implausible_time", "duplicate", "out_of_order",
               "undecodable", "processing_error")
#: Bar times before this are absurd for this system (epoch milliseconds of 2000-01-01T00:00Z).
MIN_BAR_TS_MS = 946_684_800_000
#: A bar starts before it is sent: one stamped further than this ahead of the wall clock is implausible
#: (the margin covers clock skew between a collector and the stream).
FUTURE_TOLERANCE_MS = 15 * 60_000
_INT64 = 2**63

BARS_TOPIC, DLQ_TOPIC, PREDICTIONS_TOPIC = "market.bars", "market.bars.dlq", "predictions"


class MessageError(HftError, ValueError):
    """A message that cannot be processed; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class BarMessage:
    ticker: str
    interval: str
    ts_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    produced_ns: int | None = None

    @property
    def ts(self) -> datetime:
        return datetime.fromtimestamp(self.ts_ms / 1000, timezone.utc)

    @property
    def correlation_id(self) -> str:
        return correlation_id(self.ticker, bar_end_ns(self.ts_ms * 1_000_000, self.interval))


def encode_bar(bar: BarMessage) -> bytes:
    body = {"schema": BAR_SCHEMA, "version": BAR_VERSION, **asdict(bar)}
    body["ts"] = body.pop("ts_ms")
    if body["produced_ns"] is None:
        del body["produced_ns"]
    return json.dumps(body, separators=(",", ":")).encode()


def _number(value, name: str) -> float:
    if value.__class__ is int:  # bool is not a number here; a huge integer is no float either
        if -_INT64 <= value < _INT64:
            return float(value)
        raise MessageError("invalid_field", f"{name} is out of range: {str(value)[:40]}")
    if value.__class__ is not float:
        raise MessageError("invalid_field", f"{name} must be a number, got {str(value)[:40]!r}")
    if not math.isfinite(value):
        raise MessageError("non_finite", f"{name} is {value}")
    return float(value)


def _timestamp_ms(value) -> int:
    if value.__class__ is int:
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise MessageError("invalid_field", f"ts is not ISO-8601: {value[:40]!r}") from None
        if parsed.tzinfo is None:
            raise MessageError("invalid_field", "ts has no timezone")
        return int(parsed.timestamp() * 1000)
    raise MessageError("invalid_field", "ts must be ISO-8601 or epoch milliseconds")


def check_time(ts_ms: int, now_ms: int | None) -> None:
    """Raise ``implausible_time`` for a bar time before 2000 or ahead of the wall clock (``now_ms``, None:
    the current time) by more than :data:`FUTURE_TOLERANCE_MS`."""
    if ts_ms < MIN_BAR_TS_MS:
        raise MessageError("implausible_time", f"ts {str(ts_ms)[:40]} ms is before 2000-01-01")
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if ts_ms > now_ms + FUTURE_TOLERANCE_MS:
        raise MessageError("implausible_time",
                           f"ts {str(ts_ms)[:40]} ms is {(ts_ms - now_ms) / 60_000:.0f} minutes ahead of the wall clock")


_json = msgspec.json.Decoder()
#: Compact JSON bytes of plain values: ``json.dumps(separators=(',', ':')).encode()``, faster (msgspec).
encode_json = msgspec.json.Encoder().encode


def _parse(value: bytes) -> object:
    """msgspec's parser (5x the standard library's); the standard library's where msgspec refuses, so
    its wider grammar (NaN, Infinity) still reaches the field checks and their precise reasons."""
    try:
        return _json.decode(value)
    except RecursionError:
        raise MessageError("not_json", "nested too deeply") from None
    except msgspec.DecodeError:
        pass
    try:
        return json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MessageError("not_json", str(exc)[:200]) from None


class _WellTyped(msgspec.Struct):
    """The shape of a bar whose every field has its JSON type (``ts`` in epoch ms): msgspec decodes and
    type-checks it in C. Only a fast path: anything else takes :func:`_decode_general`."""

    schema: str
    version: int
    ticker: str
    interval: str
    ts: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    produced_ns: int | None = None


_well_typed = msgspec.json.Decoder(_WellTyped)


def decode_bar(value: bytes | None, known_tickers: frozenset[str] | None = None,
               now_ms: int | None = None) -> BarMessage:
    """Parse and validate one ``market.bars`` message value (``now_ms``: the wall clock for the time check,
    None: the current time).

    A message with every field well typed and every value in range is accepted by a fast path (a third of
    the cost); any other message, including every one that fails a check, is judged by
    :func:`_decode_general`, so the verdict and its reason are the same either way (tested)."""
    if value is None:
        raise MessageError("empty", "message has no value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise MessageError("oversized", f"{len(value)} bytes > {MAX_MESSAGE_BYTES}")
    try:
        b = _well_typed.decode(value)
    except (msgspec.DecodeError, RecursionError):
        return _decode_general(value, known_tickers, now_ms)
    o, h, lo, c, ts, produced = b.open, b.high, b.low, b.close, b.ts, b.produced_ns
    now_ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if (b.schema == BAR_SCHEMA and b.version == BAR_VERSION and b.interval in INTERVALS
            and TICKER_PATTERN.fullmatch(b.ticker) is not None and (known_tickers is None or b.ticker in known_tickers)
            and MIN_BAR_TS_MS <= ts <= now_ms + FUTURE_TOLERANCE_MS and not ts % 60_000
            and MIN_PRICE <= lo <= min(o, c) and max(o, c) <= h <= MAX_PRICE
            and 0 <= b.volume <= MAX_VOLUME and (produced is None or 0 <= produced < _INT64)):
        return BarMessage(b.ticker, b.interval, ts, o, h, lo, c, b.volume, produced)
    return _decode_general(value, known_tickers, now_ms)


def _decode_general(value: bytes, known_tickers: frozenset[str] | None, now_ms: int | None) -> BarMessage:
    """:func:`decode_bar` for any message: each check in turn, raising the first one's reason."""
    body = _parse(value)
    if not isinstance(body, dict):
        raise MessageError("not_json", "top-level value is not an object")
    get = body.get
    if get("schema") != BAR_SCHEMA:
        raise MessageError("wrong_schema", f"schema {get('schema')!r} != {BAR_SCHEMA!r}")
    version = get("version")
    if version != BAR_VERSION or version.__class__ is not int:
        raise MessageError("wrong_version", f"version {version!r} != {BAR_VERSION}")
    ticker = get("ticker")
    if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker):
        raise MessageError("invalid_field", f"bad ticker {ticker!r}")
    if known_tickers is not None and ticker not in known_tickers:
        raise MessageError("unknown_ticker", f"{ticker} is not in the configured universe")
    interval = get("interval")
    if interval not in INTERVALS:
        raise MessageError("invalid_field", f"interval {interval!r} not in {INTERVALS}")
    ts_ms = _timestamp_ms(get("ts"))
    check_time(ts_ms, now_ms)
    if ts_ms % 60_000:
        raise MessageError("invalid_field", "ts is not on a minute boundary")
    o, h, lo, c = _number(get("open"), "open"), _number(get("high"), "high"), _number(get("low"), "low"), \
        _number(get("close"), "close")
    if min(o, h, lo, c) < MIN_PRICE or max(o, h, lo, c) > MAX_PRICE:
        raise MessageError("bad_price", f"prices must be in [{MIN_PRICE:g}, {MAX_PRICE:g}]: o={o} h={h} l={lo} c={c}")
    if h < max(o, c, lo) or lo > min(o, c):
        raise MessageError("inconsistent_ohlc", f"high/low do not bound open/close: o={o} h={h} l={lo} c={c}")
    volume = _number(get("volume"), "volume")
    if not 0 <= volume <= MAX_VOLUME:
        raise MessageError("invalid_field", f"volume must be in [0, {MAX_VOLUME:g}], got {volume!r}")
    produced = get("produced_ns")
    if produced is not None and (produced.__class__ is not int or not 0 <= produced < _INT64):
        raise MessageError("invalid_field", "produced_ns must be a 64-bit integer >= 0")
    return BarMessage(ticker, interval, ts_ms, o, h, lo, c, volume, produced)


def message_correlation_id(body: object) -> str | None:
    """The correlation id of a decoded bar, prediction or DLQ'd bar message (``ticker``, ``interval``,
    ``ts``), leniently: None when those fields do not make one (a message the stream refused may be anything)."""
    if not isinstance(body, dict):
        return None
    ticker, interval = body.get("ticker"), body.get("interval") or "1m"
    if not isinstance(ticker, str) or not TICKER_PATTERN.fullmatch(ticker) or interval not in INTERVALS:
        return None
    try:
        ts_ms = _timestamp_ms(body.get("ts"))
    except MessageError:
        return None
    if not -_INT64 // 2 < ts_ms * 1_000_000 < _INT64 // 2:
        return None
    return correlation_id(ticker, bar_end_ns(ts_ms * 1_000_000, Interval.parse(interval)))


def dlq_record(reason: str, detail: str, topic: str, partition: int, offset: int, key: bytes | None,
               value: bytes | None) -> bytes:
    """The DLQ message for a rejected input, original bytes included."""
    body = {"schema": DLQ_SCHEMA, "version": 1, "reason": reason, "detail": detail[:500], "topic": topic,
            "partition": partition, "offset": offset, "key": key.decode("utf-8", "replace") if key else None}
    if value is not None:
        try:
            body["value"] = value.decode("utf-8")
        except UnicodeDecodeError:
            body["value_b64"] = base64.b64encode(value).decode()
    return json.dumps(body, separators=(",", ":")).encode()


def prediction_record(p: Prediction) -> bytes:
    """The Kafka ``predictions`` message of a :class:`hft.schemas.Prediction` (``ts``: the bar's start)."""
    return encode_json({
        "schema": PREDICTION_SCHEMA, "version": 1, "ticker": p.ticker, "interval": p.interval, "ts": p.ts_ms,
        "probability": p.probability, "model_version": p.model_version, "produced_ns": p.produced_ns,
        "predicted_ns": p.predicted_ns, "close": p.close, "volatility": p.volatility,
    })
