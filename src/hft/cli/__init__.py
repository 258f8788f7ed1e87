"""The ``hft`` command: one module per command group, each calling library functions.

    hft ingest | features | lake        data: bars into the lake (validated), Spark features, what it holds
    hft train | model                   the direction model: MLflow runs, registry, promotion gate
    hft stack                           the local services (Kafka, Redis, MLflow) on 127.0.0.1
    hft collect | stream                bars into Kafka; the Spark streaming job that predicts them
    hft execute                         the C++ executor service; its kill switch and status
    hft backtest                        replay bars and predictions through the same executor
    hft logs                            search logs and trading events in Elasticsearch; the shipper
    hft demo                            all of it end to end on the synthetic market

Errors: every :class:`hft.errors.HftError` (a mistake in the input or the environment) ends with a one-line
``error: ...`` on stderr and its ``exit_code`` (2); a batch that fails validation ends with exit status 1
after saying which expectations failed on how many rows. Logs are ECS JSON on stderr and in ``<HFT_HOME>/logs``
(``--log-level`` or ``HFT_LOG_LEVEL``).
"""

from __future__ import annotations

import argparse
import sys

from hft.cli import backtest, backup, data, demo, execution, logs, model, stack, streaming
from hft.cli._common import EXIT_USAGE
from hft.config import Settings
from hft.errors import HftError

#: The command groups, in the order ``hft --help`` lists them.
GROUPS = (data, model, stack, streaming, execution, backtest, logs, backup, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hft", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING, ERROR (default HFT_LOG_LEVEL or INFO)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return parser


def _reported() -> tuple[type[BaseException], ...]:
    """What ends as one ``error:`` line: the project's errors, files that are missing or unreadable, and
    MLflow's own errors when MLflow was used (imported only then: it is heavy)."""
    errors: list[type[BaseException]] = [HftError, FileNotFoundError, PermissionError]
    if "mlflow" in sys.modules:
        from mlflow.exceptions import MlflowException

        errors.append(MlflowException)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    from hft.observability.logging import configure_logging

    args = build_parser().parse_args(argv)
    settings = Settings.from_env()
    configure_logging(args.log_level or settings.log_level, service=f"hft-{args.command}")
    try:
        return args.func(args, settings)
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except _reported() as exc:
        sys.stderr.write(f"error: {exc}\n")
        return getattr(exc, "exit_code", EXIT_USAGE)


__all__ = ["build_parser", "main"]
