"""Training job: feature table -> walk-forward training -> MLflow run -> registry (challenger) -> gate.

Single-process (Keras on CPU), so it runs with the project's Python, not spark-submit::

    .venv/bin/python jobs/train_model.py --features var/lake/features [--interval 1m] \\
        [--tracking-uri sqlite:///var/mlflow.db] [--set epochs=10 --set architecture=conv1d] \\
        [--margin 0.001] [--no-promote]

Same as ``hft train``; the MLflow project in ``mlflow/MLproject`` calls it. Exit status 2 with a one-line
message on bad input (missing columns, empty table, unreachable tracking server, bad settings).
"""

from __future__ import annotations

import sys

from hft.cli import main as hft_main


def main(argv: list[str] | None = None) -> int:
    return hft_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
