"""Why the network might lose to logistic regression, with the evidence in MLflow (issue "Step 10", item 3).

Trains the direction network under one change at a time (the suspects: seed variance, class weights, the
early-stopping metric, the learning rate, regularisation, capacity) on two markets, and compares each with
logistic regression and gradient-boosted trees fitted on the same training rows and scored on the same
holdout rows (paired bootstrap of the AUC difference, :mod:`hft.model.evaluation`):

* ``synthetic``: the demo's market (4 tickers, 2024-01-02 .. 2024-03-28, ``SyntheticSource`` defaults), its
  feature table from the reference implementation (equal to the Spark job's within 1e-9, tested);
* ``real``: the shared yfinance ETF sample (``../shared/data/yfinance-1m-etf-sample``) through ``hft ingest``
  and ``hft features`` (the Spark job), as ``bench/model_real.py`` does.

Every variant is one MLflow run in the experiment ``hft-direction-study`` (params: market, variant and the
whole ModelConfig; metrics: every model's AUC with its interval, ``auc_diff_vs_*``), so the runs can be
compared side by side in the MLflow UI. Prints one row per (market, variant): network AUC, logistic
regression's, the paired difference with its interval and the verdict (better / no different / worse).
The scaler is not a variant: features are standardised on training rows in every run (the suspect
"scaling" is ruled in by construction; see the README).

Run from the repository root (about 15-25 minutes on 2 cores)::

    .venv/bin/python bench/model_study.py [--markets synthetic,real] [--variants default,seed_1,...]
                                          [--seeds 42,1,2] [--home DIR] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

#: One change at a time against the default ModelConfig.
VARIANTS: dict[str, dict] = {
    "default": {},
    "seed_1": {"seed": 1},
    "seed_2": {"seed": 2},
    "no_class_weights": {"class_weighting": False},
    "stop_on_loss": {"early_stopping": "loss"},
    "lr_3e-4": {"learning_rate": 3e-4},
    "lr_3e-3": {"learning_rate": 3e-3},
    "no_dropout": {"dropout": 0.0},
    "dropout_0.1": {"dropout": 0.1},  # the default until this study
    "dropout_0.5": {"dropout": 0.5},
    "batch_norm": {"batch_norm": True},
    "narrow_8-64": {"widths": (8, 16, 32, 64)},
    "wide_64-512": {"widths": (64, 128, 256, 512)},
    "patience_8": {"patience": 8},
    "batch_2048": {"batch_size": 2048},
}
EXPERIMENT = "hft-direction-study"


def synthetic_table():
    from hft.data.sources.synthetic import SyntheticConfig, SyntheticSource
    from hft.features.definitions import FeatureSpec
    from hft.features.reference import compute_features

    bars = SyntheticSource(SyntheticConfig()).fetch(["AAA", "BBB", "CCC", "DDD"], datetime(2024, 1, 2, tzinfo=timezone.utc),
                                                     datetime(2024, 3, 28, tzinfo=timezone.utc), "1m")
    return compute_features(bars, FeatureSpec.from_env())


def real_table(home: Path):
    import model_real

    from hft.model.dataset import load_feature_table

    data = model_real.DEFAULT_DATA
    if not data.is_dir():
        raise SystemExit(f"{data}: not found (the shared real-data sample)")
    tickers = model_real.tickers_in(data)
    spans = [model_real.sessions(data, t) for t in tickers]
    env = {**os.environ, "HFT_HOME": str(home)}
    env.pop("HFT_LAKE_ROOT", None)
    model_real.run("ingest", ["ingest", "--source", "files", "--path", str(data), "--tickers", ",".join(tickers),
                              "--start", min(a for a, _ in spans), "--end", max(b for _, b in spans)], env)
    model_real.run("features", ["features", "--master", "local[2]"], env)
    return load_feature_table(str(home / "lake" / "features"))


def verdict(low: float, high: float) -> str:
    return "better" if low > 0 else "worse" if high < 0 else "no different"


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--markets", default="synthetic,real")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"of: {', '.join(VARIANTS)}")
    p.add_argument("--seeds", help="run every variant with each of these seeds (e.g. 42,1,2; default: its own)")
    p.add_argument("--home", type=Path, help="working folder (MLflow store, real market's lake); default: temporary")
    p.add_argument("--json", type=Path, help="write the figures here")
    args = p.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import mlflow

    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.training import train

    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(VARIANTS)}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="model-study-") as tmp:
        home = args.home or Path(tmp)
        home.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(f"sqlite:///{home / 'mlflow.db'}")
        experiment = mlflow.set_experiment(EXPERIMENT)
        print(f"MLflow: {mlflow.get_tracking_uri()} experiment {EXPERIMENT} ({experiment.experiment_id})")
        width = 26 if args.seeds else 18
        print(f"{'market':<10}{'variant':<{width}}{'network AUC':>26}{'logistic AUC':>14}{'trees AUC':>11}"
              f"{'network - logistic [95% CI]':>34}  verdict      s")
        for market in args.markets.split(","):
            table = synthetic_table() if market == "synthetic" else real_table(home / "real")
            frame, features = prepare(table)
            runs = [(v, {}) for v in variants] if not args.seeds else [
                (f"{v}/seed_{seed}", {"seed": int(seed)}) for v in variants for seed in args.seeds.split(",")]
            for name, seeded in runs:
                config = dataclasses.replace(ModelConfig(), **{**VARIANTS[name.split("/")[0]], **seeded})
                t0 = time.perf_counter()
                result = train(frame, features, config)
                spent = time.perf_counter() - t0
                ev = result.evaluation
                diff = {c.baseline: c.auc_diff for c in ev.comparisons}
                with mlflow.start_run(run_name=f"{market}/{name}"):
                    mlflow.log_params({"market": market, "variant": name, **config.to_params(), "rows": len(frame)})
                    mlflow.log_metrics({k: float(v) for k, v in ev.flat_metrics().items() if v == v})
                    mlflow.log_metrics({"train_seconds": spent, "final_epochs": result.epochs,
                                        **{f"fold_{f['fold']}_best_epoch": f["best_epoch"] for f in result.folds}})
                net, lr, gbt = (ev.scores[k]["auc"] for k in ("model", "logistic_regression", "gradient_boosted_trees"))
                d = diff["logistic_regression"]
                row = {"market": market, "variant": name, "network": vars(net), "logistic_regression": vars(lr),
                       "gradient_boosted_trees": vars(gbt), "diff_vs_logistic": vars(d),
                       "diff_vs_trees": vars(diff["gradient_boosted_trees"]), "verdict": verdict(d.low, d.high),
                       "epochs": result.epochs, "fold_best_epochs": [f["best_epoch"] for f in result.folds],
                       "seconds": round(spent, 1)}
                rows.append(row)
                print(f"{market:<10}{name:<{width}}{str(net):>26}{lr.value:>14.4f}{gbt.value:>11.4f}"
                      f"{f'{d.value:+.4f} [{d.low:+.4f}, {d.high:+.4f}]':>34}  {row['verdict']:<12}{spent:4.0f}",
                      flush=True)
        worse = [f"{r['market']}/{r['variant']}" for r in rows if r["verdict"] == "worse"]
        print(f"significantly worse than logistic regression: {', '.join(worse) or 'none'}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
