"""The stack's Prometheus with the exporters of the host and of Redis, a process found by file discovery, and an
alert going all the way: Prometheus -> Alertmanager -> the project's webhook -> the executor's kill switch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from hft.stack import MONITORING_SERVICES, down, listening, status, up
from hft.stack.monitoring import prometheus_get, ui_credentials
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
    body = json.loads(prometheus_get(cfg, f"/api/v1/query?{urllib.parse.urlencode({'query': promql})}"))
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
        rules = json.loads(prometheus_get(cfg, "/api/v1/rules"))
        for url in (f"{cfg.prometheus_url}/api/v1/rules", f"http://127.0.0.1:{cfg.alertmanager_port}/api/v2/status"):
            with pytest.raises(urllib.error.HTTPError, match="401"):  # the UIs and APIs need the password
                urllib.request.urlopen(url, timeout=5)
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


#: A stream that reads 10 bars a second and, while ``predicting``, writes their predictions (run in the
#: metrics process by _run).
_STREAM_LOOP = ("import threading, time; predicting = True\n"
                "def _loop():\n"
                "    while True:\n"
                "        m.STREAM_IN.inc(10)\n"
                "        if predicting: m.STREAM_PREDICTIONS.inc(10)\n"
                "        time.sleep(1)\n"
                "threading.Thread(target=_loop, daemon=True).start()")


def _write_predictions(r, n: int, start_ms: int) -> list:
    from hft.schemas import Prediction
    from hft.streaming.store import RedisStore

    preds = [Prediction("AAA", "1m", start_ms + 60_000 * k, 0.9 if (k // 2) % 2 == 0 else 0.1, "3", None, 0,
                        100.0 + k * 0.05, 0.002) for k in range(n)]
    RedisStore(r).commit(start_ms, [], preds)
    return preds


def _exec_state(r) -> dict:
    from hft.schemas import RedisKeys

    return r.hgetall(RedisKeys().exec_state)


@pytest.mark.slow  # about 5 minutes: the rule's 2-minute rate window and 2-minute `for`, Alertmanager's groups
def test_predictions_stop_the_alert_fires_the_real_executor_halts_and_the_alert_resolves(monitored, tmp_path):
    """The issue's scenario against the real servers and a real `hft execute`: the stream keeps reading bars but
    stops writing predictions -> HftPredictionsStale pending, then firing -> Alertmanager -> the project's
    authenticated webhook -> kill switch -> the executor halts: a prediction that arrives afterwards becomes no
    order -> predictions resume -> the alert resolves, the webhook hears it, and trading stays halted until a
    person resumes it. The console page and the alerts page show the firing alert (screenshots for the README)."""
    from browser import chromium, new_page, screenshot_dir
    from hft.redis_conn import connect
    from hft.schemas import RedisKeys

    cfg, _ = monitored
    r = connect(cfg.redis_url)
    r.delete(RedisKeys().exec_halt, RedisKeys().predictions, RedisKeys().orders, RedisKeys().exec_state)
    env = {**os.environ, "HFT_HOME": str(cfg.home), "HFT_REDIS_PORT": str(cfg.redis_port), "HFT_LOG_FILES": "0",
           **{f"HFT_EXEC_{k}": "0.5" for k in ("ENTER_LONG", "EXIT_LONG", "ENTER_SHORT", "EXIT_SHORT")}}
    executor_port = free_port()
    executor = subprocess.Popen([sys.executable, "-m", "hft.cli", "execute", "--tickers", "AAA", "--no-kafka",
                                 "--replay-clock", "--journal", str(tmp_path / "journal"), "--metrics-port",
                                 str(executor_port)], env=env, stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "executor.err", "w"))  # noqa: SIM115 - the child's
    stream = _metrics_process(cfg.home, free_port(), "stream")
    hook = f"http://127.0.0.1:{cfg.alert_hook_port}/metrics"
    t0_ms = (int(time.time() * 1000) // 60_000 - 600) * 60_000
    try:
        _run(stream, f"exec({_STREAM_LOOP!r})")  # one line for _run
        _write_predictions(r, 8, t0_ms)  # trading normally
        deadline = time.monotonic() + 60
        while int(_exec_state(r).get("journal_records", 0)) == 0 or not r.xlen(RedisKeys().orders):
            assert time.monotonic() < deadline and executor.poll() is None, "the executor did not trade"
            time.sleep(0.5)
        assert _exec_state(r)["halted"] == "0"
        _wait_for(cfg, f'hft_exec_halted{{instance="127.0.0.1:{executor_port}"}}',
                  lambda res: bool(res) and res[0]["value"][1] == "0", timeout=60)
        time.sleep(20)  # predictions flowing for a while: the rate window sees them
        _run(stream, "predicting = False")  # the predictions stop; bars still come in
        _wait_for(cfg, 'ALERTS{alertname="HftPredictionsStale", alertstate="pending"}', bool, timeout=200)
        assert r.get(RedisKeys().exec_halt) is None, _query(cfg, "ALERTS")  # pending: nothing engaged yet
        _wait_for(cfg, 'ALERTS{alertname="HftPredictionsStale", alertstate="firing"}', bool, timeout=200)
        deadline = time.monotonic() + 60
        while r.get(RedisKeys().exec_halt) != "halt":
            assert time.monotonic() < deadline, "the firing alert did not engage the kill switch"
            time.sleep(0.5)
        text = urllib.request.urlopen(hook, timeout=5).read().decode()
        assert 'hft_alerts_kill_switch_engaged_total{alertname="HftPredictionsStale"} 1.0' in text
        # the real executor halts: what reaches it now becomes no order
        orders_before = [f for _, f in r.xrange(RedisKeys().orders) if f["type"] == "order_sent"]
        _write_predictions(r, 6, t0_ms + 8 * 60_000)
        deadline = time.monotonic() + 60
        while _exec_state(r).get("halted") != "1":
            assert time.monotonic() < deadline and executor.poll() is None, (
                "the executor did not halt", _exec_state(r), r.get(RedisKeys().exec_halt),
                r.xinfo_groups(RedisKeys().predictions), (tmp_path / "executor.err").read_text()[-3000:])
            time.sleep(0.5)
        _wait_for(cfg, f'hft_exec_halted{{instance="127.0.0.1:{executor_port}"}}',
                  lambda res: bool(res) and res[0]["value"][1] == "1", timeout=60)
        time.sleep(2)
        assert [f for _, f in r.xrange(RedisKeys().orders) if f["type"] == "order_sent"] == orders_before
        with chromium() as browser, new_page(browser, 1400, 1000, credentials=ui_credentials(cfg)) as page:
            shots = screenshot_dir(tmp_path / "shots")
            page.goto(f"{cfg.prometheus_url}/consoles/hft.html")
            assert "HftPredictionsStale" in " ".join(page.locator("tr.firing").all_inner_texts())
            page.screenshot(path=str(shots / "prometheus-console-alert.png"), full_page=True)
            page.goto(f"{cfg.prometheus_url}/classic/alerts")  # Debian's build serves the classic UI
            page.get_by_text("HftPredictionsStale").first.click()  # expand it: labels, annotations, runbook
            rule = page.locator("code", has_text="alert: HftPredictionsStale").first
            rule.wait_for()
            assert "runbook" in rule.inner_text()
            page.get_by_text("HftPredictionsStale").first.scroll_into_view_if_needed()
            page.screenshot(path=str(shots / "prometheus-alert-firing.png"), full_page=True)
        # The predictions come back: the alert resolves, and Alertmanager says so to the webhook.
        _run(stream, "predicting = True")
        _wait_for(cfg, 'ALERTS{alertname="HftPredictionsStale"}', lambda res: res == [], timeout=90)
        deadline = time.monotonic() + 90
        while 'hft_alerts_received_total{alertname="HftPredictionsStale",status="resolved"}' not in (
                text := urllib.request.urlopen(hook, timeout=5).read().decode()):
            assert time.monotonic() < deadline, "Alertmanager never sent the resolution"
            time.sleep(1)
        assert r.get(RedisKeys().exec_halt) == "halt" and _exec_state(r)["halted"] == "1"  # resuming is a human act
    finally:
        for proc in (stream, executor):
            if proc.poll() is None:
                proc.kill()
        r.close()
