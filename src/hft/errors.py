"""One exception hierarchy: every error the system reports to a person derives from :class:`HftError`.

The ``hft`` command maps them to exit codes in one place (:func:`hft.cli.main`): an :class:`HftError` is a
one-line ``error: ...`` and exit status ``exit_code`` (2, a mistake in the input or the environment,
unless the class says otherwise); anything else is a bug and keeps its traceback.

Each package keeps its own subclass next to the code that raises it, so callers can catch precisely:
``SourceError`` (data sources), ``SchemaError`` (bar layout), ``DatasetError`` (feature tables),
``WeightsFileError``, ``RegistryError``, ``NoChampionError`` (model and registry), ``StackError`` (local
services), ``DeliveryError`` (Kafka), ``JournalError`` (executor journal), ``PredictionsError`` and
``BacktestInputError`` (backtests), ``NoBarsError`` and ``JobError`` (Spark jobs), ``MessageError`` (a Kafka
message refused with a reason: the stream sends it to the DLQ, the CLI never sees it).
"""

from __future__ import annotations


class HftError(Exception):
    """Base of the project's errors; ``exit_code``: the ``hft`` command's exit status for it."""

    exit_code: int = 2


class UserError(HftError):
    """A mistake in what the user asked (arguments, dates, files); reported in one line, no traceback."""


class JobError(HftError):
    """A Spark job (spark-submit) failed; the message carries its last error line."""
