"""Market-data sources. Only this package knows vendor formats; everything past it sees bars."""

from hft.data.sources.base import BarSource, SourceError

__all__ = ["BarSource", "SourceError", "make_source"]


def make_source(name: str, **options) -> BarSource:
    """Build a source by name: ``synthetic``, ``yfinance`` or ``files`` (``options`` go to its constructor)."""
    if name == "synthetic":
        from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource

        return SyntheticSource(SyntheticConfig(**options))
    if name == "yfinance":
        from hft.data.sources.yfinance import YFinanceSource

        return YFinanceSource(**options)
    if name == "files":
        from hft.data.sources.files import FileSource

        return FileSource(**options)
    raise SourceError(f"unknown source {name!r}; expected synthetic, yfinance or files")
