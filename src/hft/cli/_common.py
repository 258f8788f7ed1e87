"""What every command module of the ``hft`` CLI shares: exit codes, argument types, output."""

from __future__ import annotations

import argparse
import sys
from datetime import date

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def arg_date(value: str) -> date:
    """argparse type: a YYYY-MM-DD date."""
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def arg_tickers(value: str) -> list[str]:
    """argparse type: comma-separated tickers, upper-cased (:func:`hft.config.parse_tickers`)."""
    from hft.config import parse_tickers

    try:
        return list(parse_tickers(value))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def out(text: str = "") -> None:
    """Results for the person at the terminal (stdout); logs go to stderr."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def stack_config():
    from hft.stack import StackConfig

    return StackConfig.from_env()
