"""The alert webhook without Alertmanager: who may post, what engages the kill switch, nothing else does."""

from __future__ import annotations

import json
import stat
import threading
import urllib.error
import urllib.request
from http.server import ThreadingHTTPServer

import pytest

from hft.observability.alert_hook import Hook, engages_kill_switch, handler_for, webhook_token

FIRING = {"status": "firing", "labels": {"alertname": "HftPredictionsStale", "severity": "critical",
                                         "model_aware": "true"}, "annotations": {"summary": "stale"}}


def test_only_firing_critical_model_aware_alerts_engage_the_kill_switch():
    assert engages_kill_switch(FIRING)
    assert not engages_kill_switch({**FIRING, "status": "resolved"})
    assert not engages_kill_switch({**FIRING, "labels": {**FIRING["labels"], "severity": "warning"}})
    assert not engages_kill_switch({**FIRING, "labels": {"alertname": "HftTargetDown", "severity": "critical"}})
    assert not engages_kill_switch({"status": "firing"})


def test_the_token_is_generated_once_and_private(tmp_path, monkeypatch):
    monkeypatch.delenv("HFT_ALERT_WEBHOOK_TOKEN", raising=False)
    token = webhook_token(tmp_path)
    assert len(token) >= 32 and webhook_token(tmp_path) == token
    assert stat.S_IMODE((tmp_path / "secrets" / "alert-webhook-token").stat().st_mode) == 0o600
    monkeypatch.setenv("HFT_ALERT_WEBHOOK_TOKEN", "from-env")
    assert webhook_token(tmp_path) == "from-env"


@pytest.fixture
def hook_url():
    halted = []
    hook = Hook("s3cret", "redis://127.0.0.1:9/0", kill_switch=True)
    hook._halt = lambda: halted.append(True)  # type: ignore[method-assign]  # Redis: in the integration test
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(hook))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", halted
    server.shutdown()
    server.server_close()


def _post(url: str, body: bytes, token: str | None) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {token}"} if token else {})
    req = urllib.request.Request(f"{url}/alerts", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_posts_need_the_token_and_bad_bodies_change_nothing(hook_url):
    url, halted = hook_url
    body = json.dumps({"alerts": [FIRING]}).encode()
    assert _post(url, body, None)[0] == 401
    assert _post(url, body, "wrong")[0] == 401
    assert _post(url, body, "s3cret" + "x")[0] == 401
    for bad in (b"not json", b"[]", json.dumps({"alerts": "x"}).encode(), json.dumps({"alerts": [1]}).encode()):
        assert _post(url, bad, "s3cret")[0] == 400, bad
    assert halted == []
    assert _post(url, json.dumps({"alerts": [{**FIRING, "status": "resolved"}]}).encode(), "s3cret") == (
        200, {"kill_switch_engaged_by": []})
    assert halted == []
    assert _post(url, body, "s3cret") == (200, {"kill_switch_engaged_by": ["HftPredictionsStale"]})
    assert halted == [True]
