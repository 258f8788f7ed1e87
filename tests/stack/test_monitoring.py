"""The stack's Prometheus with the exporters of the host and of Redis, and a process found by file discovery."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from hft.stack import MONITORING_SERVICES, down, listening, status, up
from ports import free_port

pytestmark = pytest.mark.integration


def _query(cfg, promql: str) -> list[dict]:
    url = f"{cfg.prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def _wait_for(cfg, promql: str, want, timeout: float = 45.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        result = _query(cfg, promql)
        if want(result):
            return result
        assert time.monotonic() < deadline, f"{promql}: {result}"
        time.sleep(1)


def test_prometheus_scrapes_the_exporters_and_finds_a_process_started_later(tmp_path, make_stack_config):
    cfg = make_stack_config(tmp_path)
    proc = None
    try:
        started = up(cfg, ["redis", "monitoring"])
        assert set(started) == {"redis", *MONITORING_SERVICES}
        assert all(st.healthy for name, st in status(cfg).items() if name in MONITORING_SERVICES)
        sockets = listening(cfg)
        assert all(addr == "127.0.0.1" for name in MONITORING_SERVICES for addr, _ in sockets[name]), sockets
        assert ("127.0.0.1", cfg.prometheus_port) in sockets["prometheus"]

        for job in ("prometheus", "node", "redis"):
            _wait_for(cfg, f'up{{job="{job}"}}', lambda r: [s["value"][1] for s in r] == ["1"])
        _wait_for(cfg, "redis_up", lambda r: bool(r) and r[0]["value"][1] == "1")
        _wait_for(cfg, "node_filesystem_size_bytes", bool)
        rules = json.loads(urllib.request.urlopen(f"{cfg.prometheus_url}/api/v1/rules", timeout=5).read())
        assert "HftPredictionsStale" in {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}

        # A process that serves /metrics, started after Prometheus, is scraped without editing a file...
        port = free_port()
        code = ("import sys, time; from hft.observability.metrics import serve, EXEC_HALTED; "
                "serve(int(sys.argv[1]), 'executor'); EXEC_HALTED.set(1); print('ready', flush=True); time.sleep(600)")
        env = {**os.environ, "HFT_HOME": str(tmp_path)}
        proc = subprocess.Popen([sys.executable, "-c", code, str(port)], env=env, stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        found = _wait_for(cfg, 'hft_exec_halted{component="executor"}', bool)
        assert found[0]["metric"]["instance"] == f"127.0.0.1:{port}" and found[0]["value"][1] == "1"
        # ...and when it is killed, its target stays and reads down: what HftTargetDown alerts on.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait_for(cfg, f'up{{job="hft", instance="127.0.0.1:{port}"}}', lambda r: bool(r) and r[0]["value"][1] == "0")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        down(cfg)
