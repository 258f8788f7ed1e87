"""``hft backtest``: lake bars -> features -> champion (or given probabilities) -> C++ executor -> report.

    hft backtest --start 2024-03-01 --end 2024-03-28 [--tickers AAA,BBB] [--interval 1m] [--out DIR]
                 [--probabilities FILE.parquet] [--fee-bps B] [--slippage-bps B] [--latency-us U] [--capital 1000000]

The paper exchange's fee, slippage and latency, and every strategy and risk setting, are the live
executor's (``HFT_EXEC_*``, :class:`hft.execution.config.ExecConfig`) unless a flag here overrides them.

Mistakes in the input raise :class:`hft.errors.UserError`, which ``hft.cli.main`` reports as one
``error: ...`` line with exit status 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hft.cli._common import arg_date, arg_tickers
from hft.errors import UserError

log = logging.getLogger(__name__)


def register(subparsers) -> argparse.ArgumentParser:
    """Adds ``backtest`` to the ``hft`` sub-commands and returns its parser."""
    p = subparsers.add_parser("backtest", help="replay lake bars and model predictions through the C++ executor")
    p.add_argument("--start", type=arg_date, required=True, help="first session date YYYY-MM-DD")
    p.add_argument("--end", type=arg_date, required=True, help="last session date YYYY-MM-DD (inclusive)")
    p.add_argument("--tickers", type=arg_tickers, help="comma-separated (default: every ticker in the lake)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--out", help="output folder (default <HFT_HOME>/backtests/<start>_<end>)")
    p.add_argument("--probabilities", help="Parquet with ticker, ts, probability (instead of the champion model)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or sqlite under HFT_HOME)")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.add_argument("--capital", type=float, default=1_000_000.0, help="initial capital (currency units)")
    p.add_argument("--fee-bps", type=float, help="paper exchange fee, bps of notional per fill (default HFT_EXEC_FEE_BPS)")
    p.add_argument("--slippage-bps", type=float, help="paper exchange adverse slippage, bps (default HFT_EXEC_SLIPPAGE_BPS)")
    p.add_argument("--latency-us", type=float, help="order latency to the paper exchange, µs (default HFT_EXEC_LATENCY_US)")
    p.add_argument("--venues", help="several paper venues behind the router: name=fee_bps/slippage_bps/latency_us"
                   "[/max_fill_qty[/max_working_notional]],... (default HFT_EXEC_VENUES; '' for the one exchange)")
    p.set_defaults(func=run)
    return p


def _read_probabilities(path: str):
    import pandas as pd

    file = Path(path)
    if not file.exists():
        raise UserError(f"--probabilities: no such file: {path}")
    try:
        frame = pd.read_parquet(file)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a file that is not Parquet
        raise UserError(f"--probabilities: cannot read {path} as Parquet: {str(exc).splitlines()[0]}") from None
    missing = [c for c in ("ticker", "ts", "probability") if c not in frame.columns]
    if missing:
        raise UserError(f"--probabilities: {path} lacks column(s): {', '.join(missing)}")
    return frame


def run(args: argparse.Namespace, settings=None) -> int:
    """Runs the backtest for parsed ``args``; writes the report to ``--out`` and prints the table."""
    from hft.backtest.engine import BacktestConfig, BacktestInputError, run_backtest
    from hft.backtest.metrics import write_report
    from hft.backtest.predictions import PredictionsError, load_bars, predictions_from_bars
    from hft.config import Settings
    from hft.features.definitions import CONTEXT_DAYS, FeatureSpec

    settings = settings or Settings.from_env()
    if args.end < args.start:
        raise UserError(f"--start {args.start} is after --end {args.end}")
    for name in ("capital", "fee_bps", "slippage_bps", "latency_us"):
        value = getattr(args, name)
        if value is None:
            continue
        if not (value >= 0 and value < float("inf")) or (name == "capital" and value == 0):
            raise UserError(f"--{name.replace('_', '-')} must be {'positive' if name == 'capital' else '>= 0'}, got {value}")
    tickers = args.tickers  # None: every ticker the lake holds in the range
    probabilities = _read_probabilities(args.probabilities) if args.probabilities else None
    out = Path(args.out) if args.out else Path(settings.home) / "backtests" / f"{args.start}_{args.end}"
    latency_ns = None if args.latency_us is None else int(round(args.latency_us * 1e3))
    try:
        config = BacktestConfig(initial_capital=args.capital, fee_bps=args.fee_bps, slippage_bps=args.slippage_bps,
                                latency_ns=latency_ns, interval=args.interval, venues=getattr(args, "venues", None))
    except ValueError as exc:
        raise UserError(f"--venues: {exc}") from None
    try:
        spec = FeatureSpec.from_env()
        bars = load_bars(args.lake or settings.lake_root, args.interval, tickers, args.start, args.end, CONTEXT_DAYS,
                         spec)
        predictions, source = predictions_from_bars(bars, probabilities=probabilities, spec=spec,
                                                    tracking_uri=getattr(args, "tracking_uri", None), start=args.start,
                                                    tickers=tickers)
        result = run_backtest(predictions, config, tickers=sorted(set(predictions["ticker"])))
    except (PredictionsError, BacktestInputError) as exc:
        raise UserError(str(exc)) from None
    report = write_report(result, out)
    sys.stdout.write(
        f"backtest {args.start}..{args.end} {args.interval} {','.join(result.tickers)}: {len(result.predictions)} "
        f"predictions ({source}), {result.counters['orders']} orders, {len(result.fills)} fills"
        f"{venue_line(result.fills)}\n\n{report.table}\n\nwritten to {out}\n"
    )
    return 0


def venue_line(fills) -> str:
    """`` (fills per venue: lit 12, cheap 30)`` when the fills came from more than one venue, else ""."""
    from hft.backtest.metrics import per_venue

    venues = per_venue(fills)
    if len(venues) < 2:
        return ""
    return " (fills per venue: " + ", ".join(f"{v} {int(n['fills'])}" for v, n in venues.items()) + ")"


__all__ = ["register", "run", "venue_line"]
