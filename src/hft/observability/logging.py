"""ECS JSON logging for every command and job.

One JSON object per line (``ecs-logging``) on stderr **and** in a file of the process's own,
``<HFT_HOME>/logs/<service>-<UTC start>-<pid>.json``, which the log shipper (:mod:`hft.observability.shipper`)
tails into Elasticsearch as Filebeat would. The file is created on the first record (a command that logs
nothing leaves none); ``HFT_LOG_FILES=0`` turns the files off. Structured counts go in
``extra={"hft": {...}}`` and land under the ``hft`` key of the document; a record about one bar carries its
correlation id (:func:`hft.schemas.correlation_id`) as ``extra=trace(cid)``, ECS's ``trace.id``.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

import ecs_logging

_CONFIGURED = False

#: The file name's pattern: the shipper reads the service from it (``<service>-<start>-<pid>.json``).
LOG_SUFFIX = ".json"


def log_dir(home: Path) -> Path:
    """Where every process of ``HFT_HOME`` writes its ECS JSON log file (the shipper reads from here)."""
    return Path(home) / "logs"


def log_file_name(service: str, pid: int, started: float) -> str:
    return f"{service}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(started))}-{pid}{LOG_SUFFIX}"


def trace(correlation_id: str | None) -> dict:
    """``extra=`` for a record about one bar: its correlation id as ECS ``trace.id``."""
    return {"trace.id": correlation_id} if correlation_id else {}


def configure_logging(level: str = "INFO", service: str = "hft", stream=None, files: bool | None = None) -> None:
    """Route the root logger to ECS JSON on ``stream`` (stderr) and, unless ``files`` is False (default:
    ``HFT_LOG_FILES`` != ``0``), to this process's file under :func:`log_dir`. Safe to call more than once."""
    global _CONFIGURED
    root = logging.getLogger()
    root.setLevel(level.upper())
    if _CONFIGURED:
        return
    formatter = ecs_logging.StdlibFormatter(extra={"service.name": service})
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(formatter)
    root.handlers = [handler]
    if files is None:
        files = os.environ.get("HFT_LOG_FILES", "1").strip() not in ("0", "false", "no")
    if files:
        from hft.config import Settings

        folder = log_dir(Settings.from_env().home)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            file_handler = logging.FileHandler(folder / log_file_name(service, os.getpid(), time.time()),
                                               encoding="utf-8", delay=True)
        except OSError as exc:  # a read-only home must not stop a command: stderr still has everything
            root.warning("no log file in %s: %s", folder, exc)
        else:
            file_handler.setFormatter(formatter)
            root.addHandler(file_handler)
    # Libraries that chat at INFO on every call.
    for noisy in ("py4j", "great_expectations", "yfinance", "urllib3", "filelock", "elastic_transport"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _CONFIGURED = True
