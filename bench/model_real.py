"""The model on real markets: the real 1-minute bars of ``../shared/data/yfinance-1m-etf-sample`` (11 ETFs,
57,000 bars from 2019-12-13 to 2020-01-17, seven of them over one week only; MIT) through the pipeline a user runs, and the holdout report: the network and the
baselines with their 95% bootstrap intervals.

Run from the repository root (``make bench-model-real``)::

    .venv/bin/python bench/model_real.py [--data ../shared/data/yfinance-1m-etf-sample] [--tickers SPY,QQQ,...]
                                          [--set epochs=30 ...] [--home DIR] [--json PATH]

Steps, each the ``hft`` command a user types, in a fresh ``HFT_HOME`` (a temporary folder unless ``--home``) with
its own SQLite MLflow store: ``hft ingest --source files`` (the CSVs as ``yf.download(...).to_csv()`` writes them),
``hft features`` (the Spark job), ``hft train --no-promote`` (walk-forward training, the holdout evaluation against
the baselines, logged to MLflow). Prints each step's time and the evaluation table as ``hft train`` prints it, and
writes the holdout figures (AUC and interval per model) as JSON. The baseline measured in the same run is the
report itself: the network's AUC beside the majority, persistence and logistic-regression baselines' on the same
holdout rows, and the paired interval of the difference.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "yfinance-1m-etf-sample"
HFT = str(Path(sys.executable).with_name("hft"))


def run(step: str, argv: list[str], env: dict) -> tuple[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.run([HFT, *argv], env=env, capture_output=True, text=True)
    spent = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{step} failed (exit {proc.returncode})")
    print(f"{step:<10} {spent:7.1f} s", flush=True)
    return proc.stdout, spent


def tickers_in(data: Path) -> list[str]:
    return sorted(p.stem.upper() for p in data.glob("*.csv"))


def sessions(data: Path, ticker: str) -> tuple[str, str]:
    """First and last session dates in a ticker's CSV (its first column: ``YYYY-MM-DD HH:MM:SS-05:00``)."""
    lines = (data / f"{ticker}.csv").read_text().splitlines()
    return lines[1][:10], lines[-1][:10]


def holdout_figures(table: str) -> dict[str, dict[str, float]]:
    """``{model: {"auc", "low", "high"}}`` from the evaluation table ``hft train`` prints (rows ``name  auc
    [low, high] ...``)."""
    out = {}
    for line in table.splitlines():
        m = re.match(r"^\s*([A-Za-z_][\w -]*?)\s+(0\.\d+)\s*\[(0\.\d+),\s*(0\.\d+)\]", line)
        if m:
            out[m.group(1).strip()] = {"auc": float(m.group(2)), "low": float(m.group(3)), "high": float(m.group(4))}
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--tickers", help="comma-separated (default: every CSV in --data)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="model settings for hft train")
    p.add_argument("--home", type=Path, help="HFT_HOME to use (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        raise SystemExit(f"{args.data}: not found (the shared real-data sample; pass --data)")
    tickers = args.tickers.split(",") if args.tickers else tickers_in(args.data)
    spans = [sessions(args.data, t) for t in tickers]
    first, last = min(a for a, _ in spans), max(b for _, b in spans)
    with tempfile.TemporaryDirectory(prefix="model-real-") as tmp:
        home = args.home or Path(tmp)
        env = {**os.environ, "HFT_HOME": str(home), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}"}
        env.pop("HFT_LAKE_ROOT", None)
        print(f"{len(tickers)} tickers ({','.join(tickers)}), sessions {first} to {last}; HFT_HOME {home}")
        timings = {}
        out, timings["ingest"] = run("ingest", ["ingest", "--source", "files", "--path", str(args.data), "--tickers",
                                                ",".join(tickers), "--start", first, "--end", last], env)
        print(out.strip().splitlines()[-1] if out.strip() else "")
        _, timings["features"] = run("features", ["features", "--master", "local[2]"], env)
        sets = [a for s in args.set for a in ("--set", s)]
        table, timings["train"] = run("train", ["train", "--no-promote", *sets], env)
        print(table)
    figures = holdout_figures(table)
    result = {"tickers": tickers, "sessions": [first, last], "settings": args.set, "timings_s": timings,
              "holdout_auc": figures}
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["holdout_auc"], indent=2))


if __name__ == "__main__":
    main()
