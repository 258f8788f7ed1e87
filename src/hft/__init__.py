"""hft: a stock-trading system with a Parquet/Spark data pipeline and a C++ execution core."""

__version__ = "0.1.0"
