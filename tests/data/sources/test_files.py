"""FileSource over small fixture files written to tmp_path."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hft.data.sources.base import SourceError
from hft.data.sources.files import FileSource
from hft.schemas import BAR_COLUMNS, Interval

NY = "America/New_York"
YF_HEADER = "Datetime,Open,High,Low,Close,Volume,Dividends,Stock Splits"
START = datetime(2019, 1, 1)
END = datetime(2021, 1, 1)


def yf_rows(day: str, times: list[str], offset: str = "-05:00", price: float = 100.0, volume: int = 1000) -> list[str]:
    """yfinance-layout CSV rows, one per local time, prices rising by 1 per bar."""
    return [
        f"{day} {t}:00{offset},{price + i},{price + i + 0.5},{price + i - 0.5},{price + i + 0.25},{volume}.0,0.0,0.0"
        for i, t in enumerate(times)
    ]


def write_csv(path: Path, rows: list[str], header: str = YF_HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def local_times(bars: pd.DataFrame) -> list[str]:
    return bars["ts"].dt.tz_convert(NY).dt.strftime("%Y-%m-%d %H:%M").tolist()


def minutes(start: str, n: int, step: int = 1) -> list[str]:
    first = pd.Timestamp(f"2000-01-01 {start}")
    return [(first + pd.Timedelta(minutes=i * step)).strftime("%H:%M") for i in range(n)]


def test_fetch_yfinance_csv_returns_canonical_utc_bars(tmp_path: Path) -> None:
    write_csv(tmp_path / "spy.csv", yf_rows("2019-12-16", ["09:30", "09:31", "09:32"]))
    bars = FileSource([tmp_path / "spy.csv"]).fetch(["SPY"], START, END, Interval.M1)

    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars["ticker"].unique().tolist() == ["SPY"]
    assert bars["ts"].iloc[0] == pd.Timestamp("2019-12-16 14:30", tz="UTC")
    assert (bars["interval"] == "1m").all()
    assert bars["volume"].dtype == np.float64
    assert bars["open"].tolist() == [100.0, 101.0, 102.0]


def test_fetch_offsets_across_dst_change_give_utc(tmp_path: Path) -> None:
    rows = yf_rows("2019-03-08", ["09:30", "09:31"], "-05:00") + yf_rows("2019-03-11", ["09:30", "09:31"], "-04:00")
    write_csv(tmp_path / "SPY.csv", rows)
    bars = FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")

    utc_times = bars["ts"].dt.strftime("%m-%d %H:%M").tolist()
    assert utc_times == ["03-08 14:30", "03-08 14:31", "03-11 13:30", "03-11 13:31"]


def test_fetch_duplicate_timestamps_keeps_last_and_logs_count(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = yf_rows("2019-12-16", ["09:30", "09:31", "09:32"]) + yf_rows("2019-12-16", ["09:31", "09:32"], price=500)
    write_csv(tmp_path / "SPY.csv", rows)
    with caplog.at_level(logging.INFO, logger="hft.data.sources.files"):
        bars = FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")

    assert bars["ts"].is_unique and bars["ts"].is_monotonic_increasing
    assert bars["open"].tolist() == [100.0, 500.0, 501.0]
    assert "dropped 2 duplicate timestamp(s)" in caplog.text


def test_fetch_dividend_row_without_prices_does_not_replace_the_bar(tmp_path: Path) -> None:
    # yfinance writes a dividend as an extra row at the bar's timestamp with empty prices and volume.
    rows = yf_rows("2019-12-20", ["09:30", "09:31"]) + ["2019-12-20 09:30:00-05:00,,,,,,1.57,0.0"]
    write_csv(tmp_path / "SPY.csv", rows)
    bars = FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")

    assert bars["open"].tolist() == [100.0, 101.0]


def test_fetch_zero_volume_bars_are_kept(tmp_path: Path) -> None:
    rows = yf_rows("2019-12-16", ["09:30"], volume=0) + yf_rows("2019-12-16", ["09:31", "09:32"], price=101)
    write_csv(tmp_path / "SPY.csv", rows)
    bars = FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")

    assert bars["volume"].tolist() == [0, 1000, 1000]


def test_fetch_late_session_start_is_kept(tmp_path: Path) -> None:
    # A download that began at 11:00 on the first day, then full sessions.
    rows = yf_rows("2019-12-16", minutes("11:00", 5)) + yf_rows("2019-12-17", minutes("09:30", 5))
    write_csv(tmp_path / "SPY.csv", rows)
    bars = FileSource([tmp_path], regular_session_only=True).fetch(["SPY"], START, END, "1m")

    assert len(bars) == 10
    assert local_times(bars)[0] == "2019-12-16 11:00"


def test_fetch_regular_session_only_drops_extended_hours_bars(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", ["09:28", "09:29", "09:30", "09:31", "16:00", "16:01"]))
    everything = FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")
    regular = FileSource([tmp_path], regular_session_only=True).fetch(["SPY"], START, END, "1m")

    assert len(everything) == 6
    assert local_times(regular) == ["2019-12-16 09:30", "2019-12-16 09:31"]


def test_fetch_range_is_half_open(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", ["09:30", "09:31", "09:32"]))
    start = pd.Timestamp("2019-12-16 14:31", tz="UTC").to_pydatetime()
    end = pd.Timestamp("2019-12-16 14:32", tz="UTC").to_pydatetime()
    bars = FileSource([tmp_path]).fetch(["SPY"], start, end, "1m")

    assert local_times(bars) == ["2019-12-16 09:31"]


def test_fetch_daily_csv_with_date_column_gives_local_midnight(tmp_path: Path) -> None:
    rows = ["2019-12-16 00:00:00-05:00,1,2,0.5,1.5,100,0,0", "2019-12-17 00:00:00-05:00,2,3,1.5,2.5,200,0,0",
            "2019-12-20 00:00:00-05:00,3,4,2.5,3.5,300,0,0"]
    write_csv(tmp_path / "SPY.csv", rows, header=YF_HEADER.replace("Datetime", "Date"))
    bars = FileSource([tmp_path]).fetch(["SPY"], START, END, Interval.D1)

    assert bars["ts"].tolist()[0] == pd.Timestamp("2019-12-16 05:00", tz="UTC")
    assert len(bars) == 3 and (bars["interval"] == "1d").all()


def test_fetch_yfinance_layout_parquet_reads_datetime_index(tmp_path: Path) -> None:
    index = pd.DatetimeIndex(pd.date_range("2019-12-16 09:30", periods=4, freq="5min", tz=NY), name="Datetime")
    frame = pd.DataFrame(
        {"Open": 1.0, "High": 2.0, "Low": 0.5, "Close": 1.5, "Volume": [1, 2, 3, 4], "Dividends": 0.0}, index=index
    )
    frame.to_parquet(tmp_path / "qqq.parquet")
    bars = FileSource([tmp_path / "qqq.parquet"]).fetch(None, START, END, "5m")

    assert bars["ticker"].unique().tolist() == ["QQQ"]
    assert bars["ts"].iloc[0] == pd.Timestamp("2019-12-16 14:30", tz="UTC")
    assert bars["volume"].tolist() == [1, 2, 3, 4]


def test_fetch_bar_layout_parquet_returns_only_requested_tickers(tmp_path: Path) -> None:
    ts = pd.date_range("2019-12-16 14:30", periods=3, freq="1min", tz="UTC")
    frame = pd.concat(
        [
            pd.DataFrame(
                {"ticker": t, "ts": ts, "interval": "1m", "open": p, "high": p, "low": p, "close": p, "volume": 5}
            )
            for t, p in (("SPY", 1.0), ("QQQ", 2.0))
        ]
    )
    frame.to_parquet(tmp_path / "bars.parquet", index=False)
    bars = FileSource([tmp_path]).fetch(["qqq"], START, END, "1m")

    assert bars["ticker"].unique().tolist() == ["QQQ"]
    assert bars["close"].tolist() == [2.0, 2.0, 2.0]


def test_fetch_all_tickers_from_directory_skips_non_data_files(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", ["09:30", "09:31"]))
    write_csv(tmp_path / "QQQ.csv", yf_rows("2019-12-16", ["09:30", "09:31"]))
    (tmp_path / "LICENSE").write_text("MIT")
    bars = FileSource([tmp_path]).fetch([], START, END, "1m")

    assert bars["ticker"].tolist() == ["QQQ", "QQQ", "SPY", "SPY"]


def test_fetch_missing_path_raises_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="nope.csv does not exist"):
        FileSource([tmp_path / "nope.csv"]).fetch(["SPY"], START, END, "1m")


def test_fetch_unknown_format_raises_naming_file(tmp_path: Path) -> None:
    (tmp_path / "SPY.txt").write_text(YF_HEADER)
    with pytest.raises(SourceError, match=r"SPY\.txt: unknown format"):
        FileSource([tmp_path / "SPY.txt"]).fetch(["SPY"], START, END, "1m")


def test_fetch_missing_columns_raises_naming_file_and_columns(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", ["2019-12-16 09:30:00-05:00,1,2,0.5,1.5"], header="Datetime,Open,High,Low,Close")
    with pytest.raises(SourceError, match=r"SPY\.csv is missing column\(s\): volume"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_file_without_time_column_raises(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", ["1,2,0.5,1.5,10"], header="Open,High,Low,Close,Volume")
    with pytest.raises(SourceError, match=r"SPY\.csv is missing column\(s\): Datetime or Date"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_unparseable_timestamps_raises_naming_file(tmp_path: Path) -> None:
    rows = yf_rows("2019-12-16", ["09:30"]) + ["yesterday-05:00,1,2,0.5,1.5,10,0,0"]
    write_csv(tmp_path / "SPY.csv", rows)
    with pytest.raises(SourceError, match=r"unparseable timestamps in .*SPY\.csv column 'Datetime'") as err:
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")

    assert "\n" not in str(err.value)


def test_fetch_intraday_timestamps_without_offset_raise(tmp_path: Path) -> None:
    rows = ["2019-12-16 09:30:00,1,2,0.5,1.5,10,0,0", "2019-12-16 09:31:00,1,2,0.5,1.5,10,0,0"]
    write_csv(tmp_path / "SPY.csv", rows)
    with pytest.raises(SourceError, match="without a UTC offset"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_requested_ticker_without_file_raises_naming_it(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", ["09:30", "09:31"]))
    with pytest.raises(SourceError, match="no file holds ticker\\(s\\) IWM"):
        FileSource([tmp_path]).fetch(["SPY", "IWM"], START, END, "1m")


def test_fetch_5m_file_asked_as_1m_raises_naming_file(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", minutes("09:30", 6, step=5)))
    with pytest.raises(SourceError, match=r"SPY\.csv: bars are mostly 5 minute\(s\) apart.*not 1m"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_1m_file_asked_as_daily_raises(tmp_path: Path) -> None:
    write_csv(tmp_path / "SPY.csv", yf_rows("2019-12-16", ["09:30", "09:31"]))
    with pytest.raises(SourceError, match=r"SPY\.csv: .*not 1d bars"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1d")


def test_fetch_daily_file_asked_as_1m_raises(tmp_path: Path) -> None:
    rows = ["2019-12-16 00:00:00-05:00,1,2,0.5,1.5,100,0,0", "2019-12-17 00:00:00-05:00,2,3,1.5,2.5,200,0,0"]
    write_csv(tmp_path / "SPY.csv", rows, header=YF_HEADER.replace("Datetime", "Date"))
    with pytest.raises(SourceError, match=r"SPY\.csv: at most one bar per day; not 1m"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_bar_layout_of_other_interval_raises(tmp_path: Path) -> None:
    ts = pd.date_range("2019-12-16 14:30", periods=3, freq="5min", tz="UTC")
    frame = pd.DataFrame({"ticker": "SPY", "ts": ts, "interval": "5m", "open": 1.0, "high": 1.0, "low": 1.0,
                          "close": 1.0, "volume": 5})
    frame.to_parquet(tmp_path / "bars.parquet", index=False)
    with pytest.raises(SourceError, match=r"bars\.parquet holds 5m bars, not 1m"):
        FileSource([tmp_path]).fetch(["SPY"], START, END, "1m")


def test_fetch_fractional_and_whole_volumes_mixed_are_kept_exactly(tmp_path: Path) -> None:
    """Since about February 2026 Yahoo's 1m volumes can be fractional; whole ones stay in the same file."""
    rows = [
        "2026-11-18 09:30:00-05:00,100.0,100.5,99.5,100.25,88305.015766,0.0,0",
        "2026-11-18 09:31:00-05:00,100.0,100.5,99.5,100.25,1200,0.0,0",
        "2026-11-18 09:32:00-05:00,100.0,100.5,99.5,100.25,0.5,0.0,0",
    ]
    write_csv(tmp_path / "SPY.csv", rows)
    bars = FileSource([tmp_path]).fetch(["SPY"], START, pd.Timestamp("2027-01-01", tz="UTC"), "1m")
    assert bars["volume"].tolist() == [88305.015766, 1200.0, 0.5]


def _download_csv(tmp_path: Path, name: str, yahoo, **options) -> tuple[Path, pd.DataFrame]:
    """What a user gets from real ``yf.download(...).to_csv()`` (yfinance 1.7 against the fake Yahoo)."""
    import requests
    import yfinance as yf

    session = requests.Session()
    session.mount("https://", yahoo)
    frame = yf.download(start="2026-11-18", end="2026-11-19", interval="1m", prepost=True, session=session,
                        progress=False, threads=False, **options)
    assert not frame.empty
    path = tmp_path / name
    frame.to_csv(path)
    return path, frame


@pytest.fixture
def download_yahoo(yahoo):
    from fake_yahoo import local_bars

    spy = local_bars("2026-11-18", ["04:00", "09:30", "09:31", "09:32", "09:33", "16:00"])
    yahoo.bars["SPY"] = spy.assign(volume=[10.0, 88305.0, 1200.0, 3.0, 0.0, 7.0])
    yahoo.bars["QQQ"] = local_bars("2026-11-18", ["09:30", "09:31", "09:32"], price=300.0)
    return yahoo


WIDE = (START, pd.Timestamp("2027-01-01", tz="UTC"))


@pytest.mark.parametrize(
    "options",
    [{}, {"auto_adjust": False}, {"multi_level_index": False, "auto_adjust": False}],
    ids=["default_two_header_rows", "adj_close_column", "single_header_row"],
)
def test_fetch_yf_download_csv_of_one_ticker(tmp_path: Path, download_yahoo, options) -> None:
    path, frame = _download_csv(tmp_path, "spy.csv", download_yahoo, tickers="SPY", **options)
    header = path.read_text().splitlines()[0]
    assert ("Adj Close" in header) == (options.get("auto_adjust") is False)
    bars = FileSource([path]).fetch(["SPY"], *WIDE, "1m")
    flat = frame.droplevel("Ticker", axis=1) if isinstance(frame.columns, pd.MultiIndex) else frame
    assert bars["ts"].tolist() == flat.index.tz_convert("UTC").tolist()  # pre/post-market rows kept
    assert bars["close"].tolist() == flat["Close"].tolist() and bars["volume"].tolist() == flat["Volume"].tolist()
    regular = FileSource([path], regular_session_only=True).fetch(["SPY"], *WIDE, "1m")
    assert local_times(regular) == [f"2026-11-18 {t}" for t in ("09:30", "09:31", "09:32", "09:33")]


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_fetch_yf_download_csv_of_two_tickers_takes_tickers_from_header(tmp_path: Path, download_yahoo, group_by) -> None:
    path, frame = _download_csv(tmp_path, "download.csv", download_yahoo, tickers=["SPY", "QQQ"], group_by=group_by)
    bars = FileSource([path]).fetch(None, *WIDE, "1m")
    assert bars.groupby("ticker").size().to_dict() == {"QQQ": 3, "SPY": 6}  # QQQ's empty minutes dropped
    qqq = bars[bars["ticker"] == "QQQ"]
    assert qqq["open"].tolist() == [300.0, 301.0, 302.0]
    only = FileSource([path]).fetch(["QQQ"], *WIDE, "1m")
    assert set(only["ticker"]) == {"QQQ"}
    with pytest.raises(SourceError, match="no file holds ticker"):
        FileSource([path]).fetch(["IWM"], *WIDE, "1m")


def test_fetch_yf_download_csv_missing_a_field_raises_naming_ticker(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("Price,Close,High,Low,Open\nTicker,SPY,SPY,SPY,SPY\nDatetime,,,,\n"
                    "2026-11-18 09:30:00-05:00,1,1,1,1\n")
    with pytest.raises(SourceError, match="missing column.*SPY: volume"):
        FileSource([path]).fetch(None, *WIDE, "1m")
