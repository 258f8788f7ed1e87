"""The project's Alertmanager webhook: every alert logged and counted; critical model-aware alerts can engage
the executor's kill switch.

Alertmanager (``infra/alertmanager/alertmanager.yml.template``) posts its notifications to
``POST /alerts`` with ``Authorization: Bearer <token>``; anything else gets 401 and changes nothing. The token is
``HFT_ALERT_WEBHOOK_TOKEN``, else generated once into ``<HFT_HOME>/secrets/alert-webhook-token`` (0600).

With ``HFT_KILL_SWITCH_ON_ALERT=1`` (off by default: a person decides) a *firing* alert labelled
``severity="critical"`` and ``model_aware="true"`` (predictions stale, an ungated model serving, ...) engages the
kill switch (:func:`hft.execution.service.set_halt`): the executor halts before its next decision. A resolved
alert never resumes trading: ``hft execute resume`` stays a human act.

Run by the stack (``hft stack up --services monitoring``) as ``python -m hft.observability.alert_hook``.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import signal
import sys
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import Counter

log = logging.getLogger("hft.alerts")

RECEIVED = Counter("hft_alerts_received_total", "Alert notifications received from Alertmanager",
                   ["alertname", "status"])
KILL_SWITCH = Counter("hft_alerts_kill_switch_engaged_total", "Times an alert engaged the executor's kill switch",
                      ["alertname"])
MAX_BODY = 1 << 20


def webhook_token(home: Path) -> str:
    """``HFT_ALERT_WEBHOOK_TOKEN``, else the token generated once into ``<home>/secrets/alert-webhook-token``."""
    from hft.stack.base import secret

    return secret(home, "alert-webhook-token", "HFT_ALERT_WEBHOOK_TOKEN", nbytes=32)


def kill_switch_enabled() -> bool:
    return os.environ.get("HFT_KILL_SWITCH_ON_ALERT", "0").strip().lower() in ("1", "true", "yes")


def engages_kill_switch(alert: dict) -> bool:
    labels = alert.get("labels") or {}
    return (alert.get("status") == "firing" and labels.get("severity") == "critical"
            and labels.get("model_aware") == "true")


@dataclass
class Hook:
    token: str
    redis_url: str
    kill_switch: bool

    def handle(self, payload: dict) -> list[str]:
        """Log and count each alert; engage the kill switch where configured. The alert names that engaged it."""
        engaged: list[str] = []
        alerts = payload.get("alerts") if isinstance(payload, dict) else None
        if not isinstance(alerts, list):
            raise ValueError("no 'alerts' list in the notification")
        for alert in alerts:
            if not isinstance(alert, dict):
                raise ValueError("an alert is not an object")
            labels = alert.get("labels") or {}
            name, status = str(labels.get("alertname", "?"))[:200], str(alert.get("status", "?"))[:20]
            RECEIVED.labels(name, status).inc()
            log.warning("alert %s %s: %s", name, status, (alert.get("annotations") or {}).get("summary", ""),
                        extra={"hft": {"alert": name, "status": status, "labels": labels}})
            if self.kill_switch and engages_kill_switch(alert):
                self._halt()
                KILL_SWITCH.labels(name).inc()
                engaged.append(name)
                log.error("kill switch engaged by alert %s", name, extra={"hft": {"alert": name}})
        return engaged

    def _halt(self) -> None:
        from hft.execution.service import set_halt
        from hft.redis_conn import connect

        client = connect(self.redis_url, decode_responses=False, socket_timeout=5, socket_connect_timeout=5)
        try:
            set_halt(client, halt=True)
        finally:
            client.close()


def handler_for(hook: Hook) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
            log.debug(format, *args)

        def _answer(self, code: int, body: dict) -> None:
            raw = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                self._answer(200, {"status": "ok", "kill_switch_on_alert": hook.kill_switch})
            elif self.path == "/metrics":
                from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

                raw = generate_latest()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            else:
                self._answer(404, {"error": "not found"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/alerts":
                return self._answer(404, {"error": "not found"})
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {hook.token}".encode()):
                log.warning("alert webhook: refused a request without the right token from %s", self.client_address[0])
                return self._answer(401, {"error": "a valid bearer token is required"})
            try:
                length = int(self.headers.get("Content-Length", "0"))
                if not 0 < length <= MAX_BODY:
                    raise ValueError(f"body of {length} bytes")
                engaged = hook.handle(json.loads(self.rfile.read(length)))
            except (ValueError, TypeError) as exc:
                return self._answer(400, {"error": str(exc)[:300]})
            except Exception as exc:  # noqa: BLE001 - Redis down: Alertmanager retries on 5xx
                log.exception("alert webhook: handling failed")
                return self._answer(503, {"error": f"{type(exc).__name__}: {exc}"[:300]})
            return self._answer(200, {"kill_switch_engaged_by": engaged})

    return Handler


class HttpsServer(ThreadingHTTPServer):
    """HTTPS: each connection's TLS handshake in its own thread, with a deadline (a client that connects and
    says nothing holds one thread for 10 s, never the accepting loop)."""

    def __init__(self, address, handler, context):
        super().__init__(address, handler)
        self.context = context

    def finish_request(self, request, client_address) -> None:
        import ssl

        request.settimeout(10)
        try:
            secure = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            log.debug("TLS handshake with %s failed: %s", client_address[0], e)
            return
        try:
            super().finish_request(secure, client_address)
        finally:
            secure.close()


def main(argv: list[str] | None = None) -> None:
    from hft.config import Settings
    from hft.observability.discovery import register
    from hft.observability.logging import configure_logging

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (the stack's host)")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--redis", required=True, help="the Redis the executor reads its kill switch from")
    p.add_argument("--tls-cert", help="serve HTTPS with this certificate chain (PEM; with --tls-key)")
    p.add_argument("--tls-key", help="the certificate's key (PEM)")
    args = p.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        p.error("--tls-cert and --tls-key go together")
    configure_logging(service="hft-alert-hook")
    hook = Hook(webhook_token(Settings.from_env().home), args.redis, kill_switch_enabled())
    if args.tls_cert:
        import ssl

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(args.tls_cert, args.tls_key)
        server: ThreadingHTTPServer = HttpsServer((args.host, args.port), handler_for(hook), context)
    else:
        server = ThreadingHTTPServer((args.host, args.port), handler_for(hook))
    register("alert-hook", args.port, host=args.host, scheme="https" if args.tls_cert else "http")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # `hft stack down`: exit through atexit (target file)
    log.info("alert webhook on %s:%d (kill switch on critical model-aware alerts: %s)", args.host, args.port,
             "on" if hook.kill_switch else "off; HFT_KILL_SWITCH_ON_ALERT=1 turns it on")
    server.serve_forever()


if __name__ == "__main__":
    main()
