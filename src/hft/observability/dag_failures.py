"""The visible signal of a failed Airflow task: an ERROR log line and a Prometheus counter.

Every DAG of the project sets :func:`on_task_failure` as its tasks' ``on_failure_callback`` (it runs once a task
has failed for good, after its retries). It logs one ECS error line (dag, task, run, try, the exception) and
adds one to ``hft_airflow_task_failures_total{dag_id, task_id}`` in the Prometheus text file
``<HFT_HOME>/metrics/airflow.prom`` (the node_exporter textfile-collector format; the file is rewritten
atomically under a lock, so concurrent task processes never lose a count). Light imports only: DAG files
import this at parse time.
"""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path

from hft.config import Settings

log = logging.getLogger("hft.dags")

METRIC = "hft_airflow_task_failures_total"
HELP = "Airflow task instances that failed for good (after their retries), by DAG and task"


def metrics_file(home: Path | None = None) -> Path:
    """``<HFT_HOME>/metrics/airflow.prom``."""
    return (home or Settings.from_env().home) / "metrics" / "airflow.prom"


def _label(value: str) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def read_failures(path: Path | None = None) -> dict[tuple[str, str], int]:
    """``{(dag_id, task_id): failures}`` from the text file (empty when there is none yet)."""
    from prometheus_client.parser import text_string_to_metric_families

    path = path or metrics_file()
    if not path.exists():
        return {}
    out: dict[tuple[str, str], int] = {}
    for family in text_string_to_metric_families(path.read_text()):
        for sample in family.samples:
            if sample.name == METRIC:
                out[(sample.labels["dag_id"], sample.labels["task_id"])] = int(sample.value)
    return out


def count_failure(dag_id: str, task_id: str, path: Path | None = None) -> int:
    """Add one failure of ``dag_id.task_id`` to the text file; the new count."""
    path = path or metrics_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        counts = read_failures(path)
        counts[(dag_id, task_id)] = counts.get((dag_id, task_id), 0) + 1
        lines = [f"# HELP {METRIC} {HELP}", f"# TYPE {METRIC} counter"]
        lines += [f'{METRIC}{{dag_id="{_label(d)}",task_id="{_label(t)}"}} {n}' for (d, t), n in sorted(counts.items())]
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(path)
    return counts[(dag_id, task_id)]


def on_task_failure(context) -> None:
    """Airflow ``on_failure_callback``: log the failure and count it. Never raises (a callback must not)."""
    try:
        ti = context["ti"]
        dag_id, task_id = ti.dag_id, ti.task_id
        run_id = getattr(ti, "run_id", None) or context.get("run_id")
        error = context.get("exception")
        n = count_failure(dag_id, task_id)
        log.error("Airflow task failed: %s.%s run %s try %s: %s (failure %d of this task)", dag_id, task_id,
                  run_id, getattr(ti, "try_number", "?"), error, n,
                  extra={"hft": {"event": "airflow_task_failed", "dag_id": dag_id, "task_id": task_id,
                                 "run_id": run_id, "error": str(error)[:1000], "failures": n}})
    except Exception:  # noqa: BLE001 - report, never raise from a callback
        log.exception("the failure callback itself failed")
