"""Backtest: historical bars and model predictions replayed through the C++ executor and its paper
exchange (:mod:`hft.backtest.engine`), predictions from the lake and the champion model
(:mod:`hft.backtest.predictions`), metrics against buy-and-hold and the report (:mod:`hft.backtest.metrics`),
and the ``hft backtest`` command (:mod:`hft.cli.backtest`)."""

from hft.backtest.engine import BacktestConfig, BacktestInputError, BacktestResult, run_backtest
from hft.backtest.metrics import Metrics, Report, buy_and_hold, metrics_table, write_report
from hft.backtest.predictions import PredictionsError, predictions_from_bars

__all__ = [
    "BacktestConfig",
    "BacktestInputError",
    "BacktestResult",
    "Metrics",
    "PredictionsError",
    "Report",
    "buy_and_hold",
    "metrics_table",
    "predictions_from_bars",
    "run_backtest",
    "write_report",
]
