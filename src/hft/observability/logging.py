"""ECS JSON logging for every command and job.

One JSON object per line on stderr (``ecs-logging``), so any ELK/OpenSearch pipeline ingests it as is.
Structured counts go in ``extra={"hft": {...}}`` and land under the ``hft`` key of the document.
"""

from __future__ import annotations

import logging
import sys

import ecs_logging

_CONFIGURED = False


def configure_logging(level: str = "INFO", service: str = "hft", stream=None) -> None:
    """Route the root logger to ECS JSON on ``stream`` (stderr). Safe to call more than once."""
    global _CONFIGURED
    root = logging.getLogger()
    root.setLevel(level.upper())
    if _CONFIGURED:
        return
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(ecs_logging.StdlibFormatter(extra={"service.name": service}))
    root.handlers = [handler]
    # Libraries that chat at INFO on every call.
    for noisy in ("py4j", "great_expectations", "yfinance", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _CONFIGURED = True
