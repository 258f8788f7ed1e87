"""The one interface every market-data source implements."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

import pandas as pd

from hft.schemas import Interval


class SourceError(Exception):
    """A source cannot deliver what was asked (unknown ticker, empty answer, unreadable file...).

    The message is meant for the user: one line, saying what was asked and what went wrong.
    """


class BarSource(abc.ABC):
    """A source of bars.

    ``fetch`` returns canonical bars (see :func:`hft.schemas.coerce_bars`): UTC bar-start timestamps in
    ``[start, end)``, sorted by (ticker, ts), no duplicate (ticker, ts). Values are not validated here:
    validation decides what reaches the lake.
    """

    name: ClassVar[str]

    @abc.abstractmethod
    def fetch(
        self, tickers: Sequence[str], start: datetime, end: datetime, interval: Interval
    ) -> pd.DataFrame: ...
