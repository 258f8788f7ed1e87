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
    """argparse type: comma-separated tickers, upper-cased."""
    out = [t.strip().upper() for t in value.split(",") if t.strip()]
    if not out:
        raise argparse.ArgumentTypeError("no tickers given")
    return out


def out(text: str = "") -> None:
    """Results for the person at the terminal (stdout); logs go to stderr."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def stack_config():
    from hft.stack import StackConfig

    return StackConfig.from_env()
