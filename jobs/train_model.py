"""Training job: feature table -> walk-forward training -> MLflow run -> registry (challenger) -> gate.

Single-process (Keras on CPU), so it runs with the project's Python, not spark-submit::

    .venv/bin/python jobs/train_model.py --features var/lake/features [--interval 1m] \\
        [--tracking-uri sqlite:///var/mlflow.db] [--set epochs=10 --set architecture=conv1d] \\
        [--margin 0.001] [--no-promote]

The same pipeline as ``hft train`` (:func:`hft.model.pipeline.train_and_register`); the MLflow project in
``mlflow/MLproject`` calls it. Exit status 2 with a one-line message on bad input (missing columns, empty
table, unreachable tracking server, bad settings).
"""

from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Train, register and gate the direction model.")
    p.add_argument("--features", required=True, help="feature table root (…/lake/features)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or sqlite under HFT_HOME)")
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="model setting, e.g. epochs=10 (repeatable)")
    p.add_argument("--margin", type=float, help="promotion margin (default HFT_PROMOTION_MARGIN)")
    p.add_argument("--no-promote", action="store_true", help="register as challenger only, skip the gate")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from hft.errors import HftError
    from hft.model.config import config_with
    from hft.model.pipeline import train_and_register
    from hft.observability.logging import configure_logging

    configure_logging(service="hft-train-job")
    try:
        outcome = train_and_register(args.features, config_with(args.set), args.interval, args.tracking_uri,
                                     promote_if_better=not args.no_promote, margin=args.margin)
    except (HftError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    print(outcome.evaluation_table)
    print(f"registered version {outcome.version} (run {outcome.run_id}); gate: {outcome.gate_reason} -> "
          f"{'promoted' if outcome.promoted else 'champion unchanged'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
