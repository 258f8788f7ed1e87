"""A small client of Airflow 3's REST API (``/api/v2``) with a JWT from ``POST /auth/token``, as Airflow 3 does it.

    client = AirflowClient("http://127.0.0.1:8080", "admin", password)
    client.unpause("market_data")
    run = client.trigger("market_data", logical_date="2024-03-08T22:00:00Z", conf={"tickers": "AAA"})
    client.wait(run["dag_id"], run["dag_run_id"])          # -> "success" | "failed"
    print(client.task_log("market_data", run["dag_run_id"], "ingest"))
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from hft.errors import HftError
from hft.tls import urlopen as tls_urlopen

FINISHED = ("success", "failed")


class AirflowApiError(HftError):
    """The API refused a call or did not answer; the message has the status and Airflow's detail."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class AirflowClient:
    def __init__(self, url: str, username: str, password: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.username = username
        self._password = password
        self.timeout = timeout
        self._token: str | None = None

    # -- transport -------------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None, auth: bool = True, accept: str = "application/json"):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Accept": accept}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(f"{self.url}{path}", data=data, headers=headers, method=method)
        try:
            with tls_urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read().decode(errors="replace")[:500]
            raise AirflowApiError(f"{method} {path}: HTTP {e.code} {detail}", e.code) from None
        except (urllib.error.URLError, OSError) as e:
            raise AirflowApiError(f"{method} {path}: Airflow at {self.url} did not answer: {e}") from None
        return json.loads(raw) if raw and accept == "application/json" else raw.decode(errors="replace")

    def token(self) -> str:
        """A JWT for the REST API (``POST /auth/token`` with the user's name and password), cached."""
        if self._token is None:
            answer = self._call("POST", "/auth/token", {"username": self.username, "password": self._password},
                                auth=False)
            self._token = answer["access_token"]
        return self._token

    # -- the calls the project uses --------------------------------------------------------------------------
    def health(self) -> dict:
        return self._call("GET", "/api/v2/monitor/health", auth=False)

    def dags(self) -> list[dict]:
        return self._call("GET", "/api/v2/dags?limit=100")["dags"]

    def dag(self, dag_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{_q(dag_id)}")

    def unpause(self, dag_id: str, paused: bool = False) -> dict:
        return self._call("PATCH", f"/api/v2/dags/{_q(dag_id)}", {"is_paused": paused})

    def trigger(self, dag_id: str, logical_date: str | None = None, run_id: str | None = None,
                conf: dict | None = None) -> dict:
        """Create a manual run; ``logical_date`` ISO-8601 with a zone (None: a run without a logical date)."""
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._call("POST", f"/api/v2/dags/{_q(dag_id)}/dagRuns", body)

    def runs(self, dag_id: str) -> list[dict]:
        return self._call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns?limit=100&order_by=-start_date")["dag_runs"]

    def delete_run(self, dag_id: str, run_id: str) -> None:
        """Delete a run that is not running (Airflow refuses that: :meth:`set_run_state` it to failed first)."""
        self._call("DELETE", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def set_run_state(self, dag_id: str, run_id: str, state: str) -> dict:
        """Mark a run ``success``, ``failed`` or ``queued`` (as the UI's buttons do; running tasks are stopped)."""
        return self._call("PATCH", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}", {"state": state})

    def run(self, dag_id: str, run_id: str) -> dict:
        return self._call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}")

    def task_instances(self, dag_id: str, run_id: str) -> dict[str, dict]:
        answer = self._call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances")
        return {ti["task_id"]: ti for ti in answer["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        answer = self._call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                                   f"/logs/{try_number}?full_content=true")
        content = answer.get("content", "")
        if isinstance(content, list):  # structured log lines
            return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)
        return str(content)

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        answer = self._call("GET", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{_q(task_id)}"
                                   f"/xcomEntries/{_q(key)}?deserialize=true&stringify=false")
        return answer.get("value")

    def wait(self, dag_id: str, run_id: str, timeout: float = 600.0, poll: float = 2.0) -> str:
        """Poll until the run finishes; its final state. AirflowApiError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.run(dag_id, run_id)["state"]
            if state in FINISHED:
                return state
            if time.monotonic() > deadline:
                raise AirflowApiError(f"{dag_id} run {run_id} still {state} after {timeout:.0f}s")
            time.sleep(poll)


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")
