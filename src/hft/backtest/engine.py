"""Replay of predictions through the C++ executor and its paper exchange — the same code that trades live.

Input: one row per (ticker, bar) with the model's ``probability``, the bar's ``close`` and a per-bar
``volatility`` (``FeatureSpec.per_bar_volatility`` of ``rv_30``, as the streaming job publishes it). Rows
are ordered by bar time across tickers (ties by ticker) and handed to :meth:`hft_exec.Executor.on_predictions`
in blocks of :data:`BLOCK` records; the outbox is drained after each block. Everything after that is
vectorised NumPy over the event arrays: there is no Python loop per prediction or per event.

Timing (what the paper exchange does, not a choice made here): an order decided on bar ``t`` of a ticker
is sent at the executor's clock ``recv_ns`` and arrives ``latency_ns`` later; it executes at the first market
price of that ticker seen at or after its arrival, i.e. at the close of the ticker's NEXT prediction, moved
against it by ``slippage_bps``, with ``fee_bps`` of notional per fill. The executor's clock is the bar's
**end** (``hft.schemas.bar_end_ns``: the input's ``ts`` is the bar's start, and its close exists only at its
end; the live executor uses the same clock) plus :attr:`BacktestConfig.receive_delay_ns` (default 0). Times
in the results (fills, equity) are therefore bar ends: a fill at the close of bar ``t+1`` is stamped with
the end of bar ``t+1``.

Accounting is in the executor's integer units (ticks of ``1 / TICKS_PER_UNIT``, ticks x shares for money)
and converted to currency only for the result frames. The equity curve is marked to market at each bar's
close (the last price the executor accepted per ticker), so its last value equals the executor's own
``equity`` — checked after every run.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

import hft_exec
from hft.errors import HftError
from hft.execution.config import ExecConfig
from hft.schemas import bar_end_ns
from hft_exec import DECISION_DTYPE, EVENT_DTYPE, PREDICTION_DTYPE, TICKS_PER_UNIT

log = logging.getLogger(__name__)

#: Predictions per executor call; the outbox is drained after each block (bounded memory).
BLOCK = 1 << 16

# Event codes, by the names the C++ core exports.
SEEN, FILL = hft_exec.EventType.prediction_seen, hft_exec.EventType.fill

REQUIRED_COLUMNS = ("ticker", "ts", "probability", "close", "volatility")


class BacktestInputError(HftError, ValueError):
    """The predictions cannot be replayed (missing columns, nothing usable)."""


@dataclass(frozen=True)
class BacktestConfig:
    """What the replay needs beyond the executor's own settings.

    Attributes:
        initial_capital: currency units the equity curve starts from (the executor itself starts at 0 cash;
            returns, drawdowns and buy-and-hold sizing use this base). Default 1,000,000, the executor's
            default gross-notional limit.
        fee_bps, slippage_bps, latency_ns: the paper exchange; None (the default) takes the live setting
            (``HFT_EXEC_FEE_BPS``, ``HFT_EXEC_SLIPPAGE_BPS``, ``HFT_EXEC_LATENCY_US``: :class:`ExecConfig`),
            so a backtest trades like ``hft execute`` unless told otherwise. :meth:`resolved` fills them in.
        receive_delay_ns: executor clock = bar end + this (staleness and order-rate limits see it).
        interval: the bars' length: a prediction is decided at its bar's end (``hft.schemas.bar_end_ns``),
            as ``hft execute`` does.
        strategy, risk: overrides of ``StrategyConfig`` / ``RiskConfig`` fields by name, e.g.
            ``{"max_position": 100}``; anything not named keeps the live setting (``ExecConfig``).
        venues: several paper venues behind the router (``ExecConfig.venues``' format,
            ``name=fee_bps/slippage_bps/latency_us[/max_fill_qty[/max_working_notional]],...``; each its own
            costs, so ``fee_bps``/``slippage_bps``/``latency_ns`` are then the single venue's only); None takes
            the live setting (``HFT_EXEC_VENUES``), "" the one paper exchange. Fills name their venue.
    """

    initial_capital: float = 1_000_000.0
    fee_bps: float | None = None
    slippage_bps: float | None = None
    latency_ns: int | None = None
    receive_delay_ns: int = 0
    interval: str = "1m"
    strategy: dict[str, Any] = field(default_factory=dict)
    risk: dict[str, Any] = field(default_factory=dict)
    venues: str | None = None

    def __post_init__(self) -> None:
        if self.venues is not None:
            ExecConfig(venues=self.venues)  # a bad spec fails here
        if not self.initial_capital > 0:
            raise ValueError("initial_capital must be positive")
        if any(v is not None and v < 0 for v in (self.fee_bps, self.slippage_bps, self.latency_ns, self.receive_delay_ns)):
            raise ValueError("fee_bps, slippage_bps, latency_ns and receive_delay_ns must be >= 0")

    def resolved(self, live: ExecConfig | None = None) -> "BacktestConfig":
        """This config with every exchange setting left None taken from the live settings (``live``;
        None: read ``HFT_EXEC_*``)."""
        from dataclasses import replace

        live = live or ExecConfig.from_env()
        return replace(
            self,
            fee_bps=live.fee_bps if self.fee_bps is None else float(self.fee_bps),
            slippage_bps=live.slippage_bps if self.slippage_bps is None else float(self.slippage_bps),
            latency_ns=int(round(live.latency_us * 1e3)) if self.latency_ns is None else int(self.latency_ns),
            venues=live.venues if self.venues is None else self.venues,
        )

    @property
    def venue_names(self) -> list[str]:
        """The venues fills name, by index (``["paper"]`` with the one paper exchange)."""
        return ExecConfig(venues=self.venues or "").venue_names

    def executor_config(self) -> hft_exec.ExecutorConfig:
        """The ``hft_exec.ExecutorConfig`` this backtest runs with: the live executor's settings
        (:class:`hft.execution.config.ExecConfig`, ``HFT_EXEC_*``), then this backtest's exchange costs and
        overrides, so a backtest trades like ``hft execute``."""
        from dataclasses import replace

        live = ExecConfig.from_env()
        own = self.resolved(live)
        cfg = replace(live, venues=own.venues or "").to_core()
        ex = cfg.exchange
        ex.fee_bps, ex.slippage_bps, ex.latency_ns = own.fee_bps, own.slippage_bps, own.latency_ns
        cfg.exchange = ex
        for name, overrides in (("strategy", self.strategy), ("risk", self.risk)):
            part = getattr(cfg, name)
            for key, value in overrides.items():
                if key.startswith("_") or not hasattr(part, key):
                    raise ValueError(f"unknown {name} setting {key!r}")
                setattr(part, key, value)
            setattr(cfg, name, part)  # pybind11 returns copies of nested structs: write them back
        return cfg


@dataclass(frozen=True)
class BacktestResult:
    """Everything one replay produced. Money in currency units unless the name says ticks.

    Attributes:
        tickers: instrument id -> ticker.
        predictions: the replayed rows in replay order (``ticker, ts, probability, close, volatility,
            instrument``).
        decisions: one ``DECISION_DTYPE`` record per prediction (what the executor did with it).
        events: the executor's outbox without the per-prediction ``prediction_seen`` records
            (``EVENT_DTYPE``), in order.
        event_prediction: for each of ``events``, the row of ``predictions`` being processed when it was
            emitted (fills: the prediction whose price executed them).
        fills: one row per fill: ``ts`` (bar that executed it), ``ticker``, ``qty`` (signed), ``price``,
            ``market`` (the bar's close), ``fee``, ``slippage`` (cost vs the close), ``notional``, ``order_id``.
        equity: per bar (union of bar times), ``initial_capital`` + PnL, marked at each ticker's last close.
        positions: per bar and ticker, shares held after the bar.
        cash: per bar, the executor's cash (currency; starts at 0).
        executor_equity: the executor's own ``equity`` at the end (currency PnL), equal to the curve's PnL.
        counters: the executor's counters.
        executor_s: seconds spent in ``on_predictions`` and ``drain_events`` (the C++ part).
        elapsed_s: seconds for the whole replay, accounting included.
    """

    config: BacktestConfig
    tickers: tuple[str, ...]
    predictions: pd.DataFrame
    decisions: np.ndarray
    events: np.ndarray
    event_prediction: np.ndarray
    fills: pd.DataFrame
    equity: pd.Series
    positions: pd.DataFrame
    cash: pd.Series
    executor_equity: float
    counters: dict
    executor_s: float
    elapsed_s: float

    @property
    def pnl(self) -> pd.Series:
        return self.equity - self.config.initial_capital

    @property
    def final_positions(self) -> dict[str, int]:
        return {t: int(v) for t, v in self.positions.iloc[-1].items()} if len(self.positions) else {}

    def events_frame(self) -> pd.DataFrame:
        """``events`` as a DataFrame with ticker, type and reason names, prices in currency."""
        ev = self.events
        names = np.array([hft_exec.EVENT_TYPES.get(k, str(k)) for k in range(max(hft_exec.EVENT_TYPES) + 1)], dtype=object)
        tickers = np.array(self.tickers + ("",), dtype=object)
        inst = np.minimum(ev["instrument"], len(self.tickers)).astype(np.int64)
        return pd.DataFrame({
            "ts_ns": ev["ts_ns"], "type": names[ev["type"]], "ticker": tickers[inst],
            "order_id": ev["order_id"], "qty": ev["qty"], "price": ev["price"] / TICKS_PER_UNIT,
            "fee": ev["fee"] / TICKS_PER_UNIT, "reason": np.array(hft_exec.REASONS, dtype=object)[ev["reason"]],
            "prediction": self.event_prediction,
        })


def prediction_records(frame: pd.DataFrame, receive_delay_ns: int = 0, interval: str = "1m") -> np.ndarray:
    """``PREDICTION_DTYPE`` records for a frame from :func:`prepare_predictions` (replay order): each decided
    at its bar's end (``ts`` is the bar's start of ``interval`` bars), as the live executor does."""
    out = np.zeros(len(frame), PREDICTION_DTYPE)
    ts_ns = bar_end_ns(_ts_ns(frame["ts"]), interval)
    out["ts_ns"] = ts_ns
    out["recv_ns"] = ts_ns + np.int64(receive_delay_ns)
    out["instrument"] = frame["instrument"].to_numpy(np.uint32)
    out["probability"] = frame["probability"].to_numpy(np.float64)
    out["price"] = frame["close"].to_numpy(np.float64)
    out["volatility"] = frame["volatility"].to_numpy(np.float64)
    return out


def _ts_ns(ts: pd.Series) -> np.ndarray:
    values = ts if isinstance(ts.dtype, pd.DatetimeTZDtype) else pd.to_datetime(ts, utc=True)
    return values.dt.tz_convert("UTC").dt.as_unit("ns").astype("int64").to_numpy()


def prepare_predictions(predictions: pd.DataFrame, tickers: list[str] | None = None) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Checked, cleaned predictions in replay order (bar time, then instrument id), with an ``instrument``
    column, and the instrument table (id -> ticker: ``tickers`` upper-cased, by default the sorted tickers
    present).

    Rows without a finite probability in [0, 1], a positive close or a finite non-negative volatility
    are dropped and counted (the first bars of each session have no volatility yet); duplicate
    (ticker, ts) keep the last row. Raises :class:`BacktestInputError` when columns are missing, a ticker is
    not in ``tickers``, or nothing is left.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in predictions.columns]
    if missing:
        raise BacktestInputError(f"predictions are missing column(s): {', '.join(missing)}")
    codes, uniques = pd.factorize(predictions["ticker"], sort=False)
    upper = np.array([str(t).upper() for t in uniques], dtype=object)
    names = tuple(t.upper() for t in tickers) if tickers else tuple(sorted(set(upper)))
    table = {t: i for i, t in enumerate(names)}
    unknown = sorted(set(upper) - set(table))
    if unknown:
        raise BacktestInputError(f"predictions for tickers not in the instrument list: {', '.join(unknown)}")
    inst = np.array([table[t] for t in upper], dtype=np.int64)[codes] if len(upper) else codes.astype(np.int64)
    ts_ns = _ts_ns(predictions["ts"])
    cols = {c: pd.to_numeric(predictions[c], errors="coerce").to_numpy(np.float64) for c in ("probability", "close", "volatility")}
    p, c, v = cols["probability"], cols["close"], cols["volatility"]
    with np.errstate(invalid="ignore"):
        ok = (p >= 0) & (p <= 1) & (c > 0) & np.isfinite(c) & (v >= 0) & np.isfinite(v) & (codes >= 0)
    if (~ok).any():
        log.info("dropped %d of %d predictions without a usable probability, close or volatility",
                 int((~ok).sum()), len(ok), extra={"hft": {"predictions_dropped": int((~ok).sum())}})
    rows = np.flatnonzero(ok)
    if len(rows) == 0:
        raise BacktestInputError("no usable predictions (each needs a probability, a close and a volatility)")
    rows = rows[np.lexsort((inst[rows], ts_ns[rows]))]  # stable: among duplicates the input order stays
    last = np.r_[(ts_ns[rows][1:] != ts_ns[rows][:-1]) | (inst[rows][1:] != inst[rows][:-1]), True]
    rows = rows[last]  # duplicate (ticker, ts): keep the last
    frame = pd.DataFrame({
        "ticker": np.array(names, dtype=object)[inst[rows]],
        "ts": pd.to_datetime(ts_ns[rows], utc=True),
        "probability": p[rows], "close": c[rows], "volatility": v[rows],
        "instrument": inst[rows].astype(np.uint32),
    })
    return frame, names


def run_backtest(
    predictions: pd.DataFrame,
    config: BacktestConfig = BacktestConfig(),
    tickers: list[str] | None = None,
) -> BacktestResult:
    """Replay ``predictions`` through a fresh executor and return fills, equity and positions per bar.

    ``predictions``: columns ``ticker, ts, probability, close, volatility`` (any order; see
    :func:`prepare_predictions`). ``tickers`` fixes the instrument ids (position in the list); by default
    the sorted tickers present.
    """
    started = time.perf_counter()
    config = config.resolved()  # the result records the costs it really ran with
    frame, names = prepare_predictions(predictions, tickers)
    records = prediction_records(frame, config.receive_delay_ns, config.interval)
    decisions, events, event_pred, marks, executor, executor_s = _replay(records, config, len(names))

    n = len(records)
    inst = records["instrument"].astype(np.int64)
    groups = _Groups(inst)
    acc = _account(groups, events, event_pred, marks)
    bar_ts, last_row = _bar_ends(records["ts_ns"])
    index = pd.DatetimeIndex(pd.to_datetime(bar_ts, utc=True), name="ts")
    scale = float(TICKS_PER_UNIT)
    equity = pd.Series(config.initial_capital + acc["equity_ticks"][last_row] / scale, index=index, name="equity")
    cash = pd.Series(acc["cash_ticks"][last_row] / scale, index=index, name="cash")
    positions = _positions_per_bar(acc["position"], groups, last_row, names, index)
    fills = _fills_frame(events, event_pred, marks, records, names, config.venue_names)
    executor_equity = executor.equity / scale
    curve_pnl = float(acc["equity_ticks"][-1]) / scale
    if abs(curve_pnl - executor_equity) > 1e-9 * max(1.0, abs(executor_equity)):
        raise AssertionError(f"equity curve ends at {curve_pnl} but the executor reports {executor_equity}")
    result = BacktestResult(
        config=config, tickers=names, predictions=frame, decisions=decisions, events=events,
        event_prediction=event_pred, fills=fills, equity=equity, positions=positions, cash=cash,
        executor_equity=executor_equity, counters=executor.counters(), executor_s=executor_s,
        elapsed_s=time.perf_counter() - started,
    )
    log.debug("backtest: %d predictions, %d orders, %d fills, PnL %.2f (executor %.2fs, %.0f predictions/s)",
             n, result.counters["orders"], len(fills), curve_pnl, executor_s, n / executor_s if executor_s else 0.0,
             extra={"hft": {"predictions": n, "fills": len(fills), "pnl": curve_pnl}})
    return result


def _replay(records: np.ndarray, config: BacktestConfig, n_instruments: int):
    """Runs the executor over ``records`` block by block. Returns decisions, the non-``seen`` events,
    the prediction row of each event, the mark (ticks, 0 = not accepted) of each prediction, the executor
    and the seconds spent in C++ calls."""
    n = len(records)
    executor = hft_exec.Executor(config.executor_config(), n_instruments)
    decisions = np.zeros(n, DECISION_DTYPE)
    marks = np.zeros(n, np.int64)
    kept: list[np.ndarray] = []
    kept_rows: list[np.ndarray] = []
    executor_s = 0.0
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        t0 = time.perf_counter()
        executor.on_predictions(records[start:stop], decisions[start:stop])
        ev = hft_exec.drain_events(executor)
        executor_s += time.perf_counter() - t0
        seen = ev["type"] == SEEN
        if int(seen.sum()) != stop - start:  # every prediction emits exactly one prediction_seen
            raise AssertionError(f"{int(seen.sum())} prediction_seen events for {stop - start} predictions")
        marks[start:stop] = ev["price"][seen]
        # An event belongs to the prediction whose prediction_seen precedes it (roll_day's resume comes just
        # before its prediction's seen record, so it lands on the previous row: harmless, it moves no money).
        row = start + np.cumsum(seen) - 1
        other = ~seen
        kept.append(ev[other])  # boolean indexing copies: the drained buffer is not kept alive
        kept_rows.append(row[other])
    events = np.concatenate(kept) if kept else np.zeros(0, EVENT_DTYPE)
    event_pred = np.concatenate(kept_rows).astype(np.int64) if kept_rows else np.zeros(0, np.int64)
    return decisions, events, event_pred, marks, executor, executor_s


class _Groups:
    """Rows grouped by an integer key (the instrument), sorted once (stable) for every per-group scan."""

    def __init__(self, groups: np.ndarray) -> None:
        self.order = np.argsort(groups, kind="stable")
        g = groups[self.order]
        n = len(g)
        first = np.r_[True, g[1:] != g[:-1]] if n else np.zeros(0, bool)
        self.first = first  # in sorted order: the row starts its group
        self.start = np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, np.int64)
        self.keys = g[first]  # each group's key, in sorted order

    def rows(self):
        """(key, its rows in row order) per group."""
        bounds = np.r_[np.flatnonzero(self.first), len(self.order)].tolist()
        for key, begin, end in zip(self.keys.tolist(), bounds[:-1], bounds[1:]):
            yield key, self.order[begin:end]

    def _unsort(self, sorted_values: np.ndarray, like: np.ndarray) -> np.ndarray:
        out = np.empty_like(like)
        out[self.order] = sorted_values
        return out

    def cumsum(self, values: np.ndarray) -> np.ndarray:
        """Running sum of ``values`` within each group, in row order (int64, exact)."""
        v = values[self.order]
        cs = np.cumsum(v)
        return self._unsort(cs - (cs - v)[self.start], values)

    def ffill(self, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Last valid value of the same group at or before each row (0 before the group's first)."""
        v, ok = values[self.order], valid[self.order]
        idx = np.maximum.accumulate(np.where(ok, np.arange(len(v)), -1)) if len(v) else np.zeros(0, np.int64)
        return self._unsort(np.where(idx >= self.start, v[np.maximum(idx, 0)], 0), values)

    def diff(self, values: np.ndarray) -> np.ndarray:
        """Change of ``values`` since the previous row of the same group (the first row: the value itself)."""
        v = values[self.order]
        prev = np.r_[0, v[:-1]] if len(v) else v
        return self._unsort(v - np.where(self.first, 0, prev), values)


def _account(groups: _Groups, events, event_pred, marks) -> dict[str, np.ndarray]:
    """Per prediction row (``groups``: the rows by instrument), after the executor processed it: position of
    its instrument, cash and equity (all integer ticks / shares)."""
    n = len(marks)
    fill = events["type"] == FILL
    f_row = event_pred[fill]
    f_qty = events["qty"][fill].astype(np.int64)
    f_cash = -(f_qty * events["price"][fill].astype(np.int64) + events["fee"][fill].astype(np.int64))
    dq = np.zeros(n, np.int64)
    np.add.at(dq, f_row, f_qty)
    position = groups.cumsum(dq)
    cash_cum = np.cumsum(f_cash)
    k = np.searchsorted(f_row, np.arange(n), side="right")  # fills are in row order
    cash = np.where(k > 0, cash_cum[np.maximum(k - 1, 0)], 0) if len(f_row) else np.zeros(n, np.int64)
    mark = groups.ffill(marks, marks > 0)
    # market value of all instruments = running sum of each row's change in its own instrument's value
    market_value = np.cumsum(groups.diff(position * mark))
    return {"position": position, "cash_ticks": cash, "mark": mark, "equity_ticks": cash + market_value}


def _bar_ends(ts_ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct bar times and the last prediction row of each (rows are in time order)."""
    if len(ts_ns) == 0:
        return ts_ns, np.zeros(0, np.int64)
    last = np.r_[ts_ns[1:] != ts_ns[:-1], True]
    rows = np.flatnonzero(last)
    return ts_ns[rows], rows


def _positions_per_bar(position, groups: _Groups, last_row, names, index) -> pd.DataFrame:
    """Shares per ticker after each bar (forward-filled between a ticker's predictions)."""
    out = np.zeros((len(last_row), len(names)), np.int64)
    bar_of_row = np.searchsorted(last_row, np.arange(len(position)))  # the bar each row belongs to
    for instrument, rows in groups.rows():  # one pass per instrument, vectorised over its rows
        at = np.searchsorted(bar_of_row[rows], np.arange(len(last_row)), side="right") - 1
        out[:, instrument] = np.where(at >= 0, position[rows][np.maximum(at, 0)], 0)
    return pd.DataFrame(out, index=index, columns=list(names))


def _fills_frame(events, event_pred, marks, records, names, venue_names) -> pd.DataFrame:
    fill = events["type"] == FILL
    ev = events[fill]
    rows = event_pred[fill]
    qty = ev["qty"].astype(np.int64)
    price = ev["price"].astype(np.int64)
    market = marks[rows]
    scale = float(TICKS_PER_UNIT)
    return pd.DataFrame({
        "ts": pd.to_datetime(records["ts_ns"][rows], utc=True),
        "ticker": np.array(names, dtype=object)[ev["instrument"].astype(np.int64)] if len(ev) else np.zeros(0, object),
        "qty": qty,
        "price": price / scale,
        "market": market / scale,
        "fee": ev["fee"].astype(np.int64) / scale,
        "slippage": (price - market) * qty / scale,
        "notional": np.abs(qty) * price / scale,
        "order_id": ev["order_id"].astype(np.int64),
        "venue": np.array(venue_names, dtype=object)[ev["venue"].astype(np.int64)] if len(ev) else np.zeros(0, object),
        "row": rows,
    })


def random_predictions(n: int, n_tickers: int = 8, seed: int = 0) -> pd.DataFrame:
    """``n`` random predictions over ``n_tickers`` tickers on a 1-minute grid (benchmarks and smoke tests):
    probabilities uniform in [0, 1], closes a random walk around 100 on the 0.0001 grid, volatility 0.001."""
    rng = np.random.default_rng(seed)
    k = np.arange(n)
    ts = pd.Timestamp("2024-01-02 14:30", tz="UTC") + pd.to_timedelta(k // n_tickers, unit="min")
    closes = np.round(100.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-4, n))), 4)
    return pd.DataFrame({"ticker": np.array([f"T{i:03d}" for i in range(n_tickers)], dtype=object)[k % n_tickers],
                         "ts": ts, "probability": rng.random(n), "close": closes, "volatility": 0.001})


__all__ = ["BLOCK", "BacktestConfig", "BacktestInputError", "BacktestResult", "prediction_records",
           "prepare_predictions", "random_predictions", "run_backtest"]
