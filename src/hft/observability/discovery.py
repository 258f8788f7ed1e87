"""File-based service discovery for Prometheus: a process that serves ``/metrics`` announces itself.

:func:`register` writes ``<HFT_HOME>/run/prometheus/targets/<component>-<pid>-<port>.json`` (Prometheus'
``file_sd_configs`` format) and removes it when the process exits normally; the stack's Prometheus reads that
folder every 5 seconds, so a stream or an executor started at any time is scraped without editing a file. A
process killed with SIGKILL leaves its file behind: Prometheus then sees the target down (``up == 0``), which is
what the ``HftProcessDown`` alert is for; ``hft stack up`` of Prometheus removes files of dead processes.
"""

from __future__ import annotations

import atexit
import json
import os
import re
from pathlib import Path

from hft.config import Settings

_COMPONENT = re.compile(r"[a-z][a-z0-9_-]{0,40}")


def targets_dir(home: Path | None = None) -> Path:
    return (home if home is not None else Settings.from_env().home) / "run" / "prometheus" / "targets"


def register(component: str, port: int, home: Path | None = None, host: str = "127.0.0.1",
             scheme: str = "http") -> Path:
    """Announce ``host:port`` (this process's ``/metrics``, over ``scheme``) as a target with label
    ``component``."""
    if not _COMPONENT.fullmatch(component):
        raise ValueError(f"not a component name: {component!r}")
    folder = targets_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    path = folder / f"{component}-{pid}-{port}.json"
    labels = {"component": component, "pid": str(pid), **({"__scheme__": scheme} if scheme != "http" else {})}
    entry = [{"targets": [f"{host}:{port}"], "labels": labels}]
    tmp = path.with_suffix(".tmp")  # Prometheus reads *.json only: never a half-written file
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)
    atexit.register(_unregister, path, pid)
    return path


def _unregister(path: Path, pid: int) -> None:
    if os.getpid() == pid:  # not from a forked child that inherited the hook
        path.unlink(missing_ok=True)


def prune(folder: Path) -> list[Path]:
    """Remove the target files of processes that no longer run; the removed paths."""
    removed = []
    for path in folder.glob("*.json"):
        try:
            pid = int(json.loads(path.read_text())[0]["labels"]["pid"])
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            continue  # not ours: leave it
        if not Path(f"/proc/{pid}").exists():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
