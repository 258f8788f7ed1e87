"""The stack's Prometheus with the exporters of the host and of Redis, a process found by file discovery, and an
alert going all the way: Prometheus -> Alertmanager -> the project's webhook -> the executor's kill switch."""

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
from ports import free_port, make_stack_config

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def monitored(tmp_path_factory):
    """Redis and the monitoring services, the kill switch on critical model-aware alerts turned on."""
    from unittest import mock

    home = tmp_path_factory.mktemp("monitoring")
    cfg = make_stack_config(home)
    try:
        with mock.patch.dict(os.environ, {"HFT_HOME": str(home), "HFT_KILL_SWITCH_ON_ALERT": "1"}):
            os.environ.pop("HFT_ALERT_WEBHOOK_TOKEN", None)
            started = up(cfg, ["redis", "monitoring"])
        yield cfg, started
    finally:
        down(cfg)


def _metrics_process(home, port: int, code: str) -> subprocess.Popen:
    """A Python process serving /metrics on ``port`` (announced under ``home``) that runs ``code`` per stdin line."""
    script = ("import sys; from hft.observability import metrics as m; "
              "m.serve(int(sys.argv[1]), sys.argv[2]); print('ready', flush=True)\n"
              "for line in sys.stdin:\n    exec(line)\n    print('done', flush=True)\n")
    env = {**os.environ, "HFT_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", script, str(port), code], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _run(proc: subprocess.Popen, line: str) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "done"


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


def test_prometheus_scrapes_the_exporters_and_finds_a_process_started_later(monitored):
    cfg, started = monitored
    proc = None
    try:
        assert set(started) == {"redis", *MONITORING_SERVICES}
        assert all(st.healthy for name, st in status(cfg).items() if name in MONITORING_SERVICES)
        sockets = listening(cfg)
        assert all(addr == "127.0.0.1" for name in MONITORING_SERVICES for addr, _ in sockets[name]), sockets
        assert ("127.0.0.1", cfg.prometheus_port) in sockets["prometheus"]
        assert sockets["alertmanager"] == [("127.0.0.1", cfg.alertmanager_port)]  # no cluster gossip port

        for job in ("prometheus", "node", "redis"):
            _wait_for(cfg, f'up{{job="{job}"}}', lambda r: [s["value"][1] for s in r] == ["1"])
        _wait_for(cfg, "redis_up", lambda r: bool(r) and r[0]["value"][1] == "1")
        _wait_for(cfg, "node_filesystem_size_bytes", bool)
        _wait_for(cfg, 'up{component="alert-hook"}', lambda r: bool(r) and r[0]["value"][1] == "1")
        rules = json.loads(urllib.request.urlopen(f"{cfg.prometheus_url}/api/v1/rules", timeout=5).read())
        assert "HftPredictionsStale" in {r["name"] for g in rules["data"]["groups"] for r in g["rules"]}
        _wait_for(cfg, 'prometheus_notifications_alertmanagers_discovered', lambda r: bool(r) and r[0]["value"][1] == "1")

        # A process that serves /metrics, started after Prometheus, is scraped without editing a file...
        port = free_port()
        proc = _metrics_process(cfg.home, port, "executor")
        _run(proc, "m.EXEC_HALTED.set(1)")
        found = _wait_for(cfg, 'hft_exec_halted{component="executor"}', bool)
        assert found[0]["metric"]["instance"] == f"127.0.0.1:{port}" and found[0]["value"][1] == "1"
        # ...and when it is killed, its target stays and reads down: what HftTargetDown alerts on.
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        _wait_for(cfg, f'up{{job="hft", instance="127.0.0.1:{port}"}}', lambda r: bool(r) and r[0]["value"][1] == "0")
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()


@pytest.mark.slow  # about 100 s, mostly the rule's minute and Alertmanager's group interval
def test_a_critical_model_aware_alert_engages_the_kill_switch_and_resolves(monitored):
    """A stream starts serving a model the gate never approved: HftServingUngatedModel fires after its minute,
    Alertmanager posts it to the webhook with the token, the webhook sets the kill switch the executor reads;
    the champion put back, the alert resolves (and trading stays halted until a person resumes it)."""
    import redis

    from hft.schemas import RedisKeys

    cfg, _ = monitored
    r = redis.Redis.from_url(cfg.redis_url, decode_responses=True)
    proc = _metrics_process(cfg.home, free_port(), "stream")
    try:
        _run(proc, "m.STREAM_MODEL_VERSION.set(7); m.STREAM_MODEL_GATE_APPROVED.set(0)")
        assert r.get(RedisKeys().exec_halt) is None
        _wait_for(cfg, 'ALERTS{alertname="HftServingUngatedModel", alertstate="pending"}', bool, timeout=60)
        assert r.get(RedisKeys().exec_halt) is None  # pending for its minute: nothing engaged yet
        _wait_for(cfg, 'ALERTS{alertname="HftServingUngatedModel", alertstate="firing"}', bool, timeout=120)
        deadline = time.monotonic() + 60
        while r.get(RedisKeys().exec_halt) != "halt":
            assert time.monotonic() < deadline, "the firing alert did not engage the kill switch"
            time.sleep(0.5)
        hook = f"http://127.0.0.1:{cfg.alert_hook_port}/metrics"
        text = urllib.request.urlopen(hook, timeout=5).read().decode()
        assert 'hft_alerts_kill_switch_engaged_total{alertname="HftServingUngatedModel"} 1.0' in text
        # The approved champion is back: the alert resolves, and Alertmanager says so to the webhook.
        _run(proc, "m.STREAM_MODEL_GATE_APPROVED.set(1)")
        _wait_for(cfg, 'ALERTS{alertname="HftServingUngatedModel"}', lambda res: res == [], timeout=60)
        deadline = time.monotonic() + 90
        while 'hft_alerts_received_total{alertname="HftServingUngatedModel",status="resolved"}' not in (
                text := urllib.request.urlopen(hook, timeout=5).read().decode()):
            assert time.monotonic() < deadline, "Alertmanager never sent the resolution"
            time.sleep(1)
        assert r.get(RedisKeys().exec_halt) == "halt"  # resuming stays a human act
    finally:
        proc.kill()
        r.close()
