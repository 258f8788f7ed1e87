"""DAG runs through the Airflow REST API, for the integration tests."""

from __future__ import annotations

import time


def run_once(client, dag_id: str, logical_date: str, run_id: str, timeout: float = 900) -> str:
    """Trigger ``dag_id`` through the REST API, wait for the run and return its state. Unpaused, the scheduler
    also creates the latest scheduled run: a second one nobody waits for (schedules are tested with
    market_data), deleted as soon as it appears."""
    client.trigger(dag_id, logical_date=logical_date, run_id=run_id)
    client.unpause(dag_id)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            scheduled = [r["dag_run_id"] for r in client.runs(dag_id) if r["run_type"] == "scheduled"]
            if scheduled:
                for scheduled_id in scheduled:
                    client.set_run_state(dag_id, scheduled_id, "failed")  # a running run cannot be deleted
                    client.delete_run(dag_id, scheduled_id)
                break
            time.sleep(0.5)
        return client.wait(dag_id, run_id, timeout=timeout)
    finally:
        client.unpause(dag_id, paused=True)
