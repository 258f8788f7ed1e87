"""``hft backtest`` (hft.cli.backtest): a run from the lake with precomputed probabilities, and one-line
errors for mistakes in the input."""

from __future__ import annotations

import argparse

import pytest

from bar_fixtures import make_bars
from hft.cli import build_parser, main
from hft.cli.backtest import register, run
from hft.data.lake import BarLake
from hft.errors import UserError


def parse(*argv):
    parser = argparse.ArgumentParser(prog="hft")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["backtest", *argv])


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    root = tmp_path_factory.mktemp("lake")
    bars = make_bars(tickers=("AAA", "BBB"), start="2024-03-07", end="2024-03-08")
    BarLake(str(root)).write(bars)
    probs = root / "probs.parquet"
    bars[["ticker", "ts"]].assign(probability=[0.9 if i % 40 < 20 else 0.1 for i in range(len(bars))]).to_parquet(probs)
    return root, probs


def test_backtest_cli_precomputed_probabilities_writes_report(lake, tmp_path, capsys):
    root, probs = lake
    args = parse("--start", "2024-03-07", "--end", "2024-03-08", "--lake", str(root), "--probabilities", str(probs),
                 "--out", str(tmp_path / "bt"))
    assert args.func(args, None) == 0
    out = capsys.readouterr().out
    assert "AAA,BBB" in out and "precomputed" in out and "total PnL" in out
    for name in ("report.txt", "metrics.json", "equity.png", "equity.csv", "fills.csv", "trades.csv"):
        assert (tmp_path / "bt" / name).stat().st_size > 0


def test_backtest_cli_with_several_venues_says_the_fills_of_each(lake, tmp_path, capsys):
    import json

    root, probs = lake
    args = parse("--start", "2024-03-07", "--end", "2024-03-08", "--lake", str(root), "--probabilities", str(probs),
                 "--out", str(tmp_path / "bt"), "--venues", "lit=0.5/1/100,cheap=0.1/0.5/500/0/60000")
    assert args.func(args, None) == 0
    out = capsys.readouterr().out
    venues = json.loads((tmp_path / "bt" / "metrics.json").read_text())["venues"]
    assert set(venues) == {"lit", "cheap"}, venues
    assert "fills per venue: " in out and all(f"{v} {n['fills']}" in out for v, n in venues.items())
    assert "venue" in (tmp_path / "bt" / "fills.csv").read_text().splitlines()[0]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "2024-03-08", "--end", "2024-03-07"], "is after --end"),
        (["--start", "2024-03-09", "--end", "2024-03-10"], "no 1m bars in the lake"),
        (["--start", "2024-03-07", "--end", "2024-03-07", "--tickers", "AAA,ZZZ"], "for: ZZZ"),
        (["--start", "2024-03-07", "--end", "2024-03-07", "--probabilities", "/nonexistent.parquet"], "no such file"),
        (["--start", "2024-03-07", "--end", "2024-03-07", "--capital", "0"], "--capital must be positive"),
        (["--start", "2024-03-07", "--end", "2024-03-07", "--fee-bps", "-1"], "--fee-bps must be >= 0"),
        (["--start", "2024-03-07", "--end", "2024-03-07", "--venues", "lit=0.5"], "--venues: .* is not name=fee_bps"),
    ],
)
def test_backtest_cli_bad_input_raises_one_line_user_error(lake, argv, message):
    root, _ = lake
    with pytest.raises(UserError, match=message) as err:
        run(parse(*argv, "--lake", str(root)))
    assert "\n" not in str(err.value)


def test_backtest_cli_probabilities_not_parquet_raises_user_error(lake, tmp_path):
    root, _ = lake
    bad = tmp_path / "p.parquet"
    bad.write_text("not parquet")
    with pytest.raises(UserError, match="cannot read .* as Parquet"):
        run(parse("--start", "2024-03-07", "--end", "2024-03-07", "--lake", str(root), "--probabilities", str(bad)))


def test_backtest_cli_bad_date_exits_with_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        parse("--start", "2024-13-01", "--end", "2024-03-07")
    assert exc.value.code == 2 and "not a date" in capsys.readouterr().err


def test_backtest_is_a_command_of_hft():
    assert "backtest" in build_parser()._subparsers._group_actions[0].choices


def test_backtest_cli_main_reversed_dates_exits_2_with_one_line(capsys, tmp_path):
    code = main(["backtest", "--start", "2024-03-08", "--end", "2024-03-07", "--lake", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1


def _fills(root, probs, out, *flags):
    import pandas as pd

    args = parse("--start", "2024-03-07", "--end", "2024-03-08", "--lake", str(root), "--probabilities", str(probs),
                 "--out", str(out), *flags)
    assert run(args) == 0
    fills = pd.read_csv(out / "fills.csv")
    assert len(fills) > 0
    return fills


def test_backtest_cli_takes_fees_slippage_and_latency_from_hft_exec_settings(lake, tmp_path, monkeypatch):
    root, probs = lake
    monkeypatch.setenv("HFT_EXEC_FEE_BPS", "3")
    monkeypatch.setenv("HFT_EXEC_SLIPPAGE_BPS", "0")
    monkeypatch.setenv("HFT_EXEC_LATENCY_US", "0")
    live = _fills(root, probs, tmp_path / "live")
    tick = 1e-4  # fees are integer ticks of the currency
    assert (live["fee"] - live["notional"] * 3e-4).abs().max() <= tick
    assert live["slippage"].abs().max() < 1e-9
    flagged = _fills(root, probs, tmp_path / "flag", "--fee-bps", "1")  # a flag overrides the setting
    assert (flagged["fee"] - flagged["notional"] * 1e-4).abs().max() <= tick
    monkeypatch.setenv("HFT_EXEC_LATENCY_US", str(90 * 1_000_000))  # orders arrive 90 s after they are sent
    late = _fills(root, probs, tmp_path / "late")
    first = lambda f: f.groupby("ticker")["ts"].min().sort_index()  # noqa: E731
    assert (first(late) > first(live)).all()
