"""Monitoring in the local stack: the Prometheus server and the exporters of the host and of Redis (Debian
packages, installed by ``make setup``), each on 127.0.0.1.

Prometheus runs from ``<run_dir>/prometheus``: ``prometheus.yml`` rendered from
``infra/prometheus/prometheus.yml.template``, the alert rules read from ``infra/prometheus/rules``, the TSDB in
``data/``, and ``targets/`` where every hft process that serves ``/metrics`` announces itself
(:mod:`hft.observability.discovery`). ``hft stack up --services monitoring`` starts the three.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from hft.stack.base import SETUP_HINT, Service, basic_auth, http_ok, mlflow_credentials, render, write_private
from hft.stack.config import StackError, infra_file
from hft.tls import urlopen as tls_urlopen

#: How often Prometheus scrapes and evaluates the rules (the rules' `for:` durations assume it).
SCRAPE_INTERVAL = "5s"


def _program(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        raise StackError(f"{name} not found (Debian package {name}): {SETUP_HINT}")
    return found


#: The user of the Prometheus and Alertmanager UIs and APIs (basic auth); the password: :func:`ui_credentials`.
UI_USER = "hft"


def ui_credentials(config) -> tuple[str, str]:
    """(user, password) of the Prometheus and Alertmanager UIs and APIs: ``HFT_PROMETHEUS_PASSWORD``, else
    generated once into ``<HFT_HOME>/secrets/prometheus-password`` (0600)."""
    from hft.stack.base import secret

    assert config.home is not None
    return UI_USER, secret(config.home, "prometheus-password", "HFT_PROMETHEUS_PASSWORD")


def write_web_config(folder: Path, config, tls=None) -> tuple[Path, Path]:
    """The servers' ``--web.config.file`` (basic auth: the bcrypt hash of the password, 0600; with ``tls``, the
    host's :class:`hft.tls.HostFiles`, HTTPS only) and a 0600 file holding the password itself, for Prometheus's
    own requests (its self-scrape, its alerts to Alertmanager). The hash is kept while the password still matches
    it (a new hash per start would only cost time)."""
    import re

    import bcrypt

    user, password = ui_credentials(config)
    web, secret_file = folder / "web.yml", folder / "ui-password"
    found = re.search(r"^  \S+: '(\$2[^']+)'$", web.read_text(), re.M) if web.exists() else None
    hashed = found.group(1) if found and bcrypt.checkpw(password.encode(), found.group(1).encode()) else \
        bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=10)).decode()
    https = f"tls_server_config:\n  cert_file: {tls.cert}\n  key_file: {tls.key}\n" if tls is not None else ""
    write_private(web, f"{https}basic_auth_users:\n  {user}: '{hashed}'\n")
    write_private(secret_file, password)
    return web, secret_file


def prometheus_get(config, path: str, timeout: float = 10.0) -> bytes:
    """GET ``path`` (``/api/v1/query?...``, ``/consoles/hft.html``) of the stack's Prometheus, authenticated."""
    import urllib.request

    request = urllib.request.Request(f"{config.prometheus_url}{path}")
    request.add_header("Authorization", basic_auth(*ui_credentials(config)))
    with tls_urlopen(request, timeout=timeout) as resp:
        return resp.read()


class Prometheus(Service):
    name = "prometheus"
    start_timeout = 60.0

    @property
    def home(self) -> Path:
        return self.config.run_dir / "prometheus"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    @property
    def targets(self) -> Path:
        """Where hft processes announce themselves: the folder they compute from HFT_HOME (the one definition)."""
        from hft.observability.discovery import targets_dir

        assert self.config.home is not None
        return targets_dir(self.config.home)

    def ports(self) -> dict[str, int]:
        return {"HFT_PROMETHEUS_PORT": self.config.prometheus_port}

    def address(self) -> str:
        return self.config.prometheus_url

    def markers(self) -> list[str]:
        return ["prometheus", f"--config.file={self.config_file}"]

    def check(self) -> None:
        _program("prometheus")
        infra_file("prometheus", "prometheus.yml.template")

    def prepare(self) -> tuple[list[str], Path]:
        from hft.observability.console import write_console
        from hft.observability.discovery import prune

        binary = _program("prometheus")
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        self.targets.mkdir(parents=True, exist_ok=True)
        prune(self.targets)  # processes that died since the last start: restarted, or gone for good
        rules = infra_file("prometheus", "prometheus.yml.template").parent / "rules"
        tls = self.tls_files()
        web_config, _ = write_web_config(self.home, self.config, tls)  # the UI and API behind basic auth
        mlflow_user, mlflow_password = mlflow_credentials(self.config)
        write_private(self.home / "mlflow-password", mlflow_password)  # to scrape the tracking server
        render(infra_file("prometheus", "prometheus.yml.template"), self.config_file,
               scrape_interval=SCRAPE_INTERVAL, rules_dir=rules, host=self.host_address, port=self.config.prometheus_port,
               node_host=self.config.address_of("node-exporter"),
               redis_exporter_host=self.config.address_of("redis-exporter"), mlflow_host=self.config.address_of("mlflow"),
               alertmanager_host=self.config.address_of("alertmanager"),
               node_port=self.config.node_exporter_port, redis_exporter_port=self.config.redis_exporter_port,
               targets_dir=self.targets, alertmanager_port=self.config.alertmanager_port,
               kafka_targets=", ".join(f'"{self.config.kafka_node_address(n)}:{self.config.kafka_node_ports(n)[2]}"'
                                           for n in range(1, self.config.kafka_brokers + 1)),
               mlflow_port=self.config.mlflow_port, mlflow_user=mlflow_user,
               mlflow_password_file=self.home / "mlflow-password",
               ui_user=UI_USER, ui_password_file=self.home / "ui-password", scheme=self.config.http_scheme,
               # HTTPS servers of the stack (itself, Alertmanager, MLflow) checked against the deployment's CA
               tls_config=f"{{ca_file: {tls.ca}}}" if tls is not None else "{}")
        promtool = shutil.which("promtool")
        if promtool:  # a broken config or rule file fails here, with promtool's words, not in the server log
            checked = subprocess.run([promtool, "check", "config", str(self.config_file)], capture_output=True,
                                     text=True, timeout=60)
            if checked.returncode == 0:
                checked = subprocess.run([promtool, "check", "web-config", str(web_config)], capture_output=True,
                                         text=True, timeout=60)
            if checked.returncode != 0:
                raise StackError(f"prometheus: {self.config_file} is not valid:\n{checked.stdout}{checked.stderr}")
        # The console page /consoles/hft.html: the Grafana dashboard, rendered by Prometheus (no Grafana needed).
        consoles = self.home / "consoles"
        write_console(infra_file("grafana", "hft-dashboard.json"), consoles)
        argv = [binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={self.host_address}:{self.config.prometheus_port}", "--storage.tsdb.retention.time=15d",
                f"--web.external-url={self.config.prometheus_url}", f"--web.console.templates={consoles}",
                f"--web.console.libraries={consoles}", f"--web.config.file={web_config}"]
        return argv, self.home

    def health(self) -> tuple[bool, str]:
        ok, detail = http_ok(f"{self.config.prometheus_url}/-/ready", auth=ui_credentials(self.config))
        return ok, f"UI and API at {self.config.prometheus_url}" if ok else detail


class _Exporter(Service):
    """A Prometheus exporter from Debian: ``program`` serving ``/metrics`` on its address (loopback only:
    :data:`hft.stack.hosts.LOOPBACK_ONLY`) and ``port``."""

    start_timeout = 30.0
    program = ""

    def port(self) -> int:
        raise NotImplementedError

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def ports(self) -> dict[str, int]:
        return {self.port_env: self.port()}

    def address(self) -> str:
        return f"http://{self.host_address}:{self.port()}/metrics"

    def markers(self) -> list[str]:
        return [self.program, f"{self.host_address}:{self.port()}"]

    def check(self) -> None:
        _program(self.program)

    def prepare(self) -> tuple[list[str], Path]:
        return [_program(self.program), *self.arguments()], self.config.run_dir

    def health(self) -> tuple[bool, str]:
        return http_ok(self.address())


class NodeExporter(_Exporter):
    name = "node-exporter"
    program = "prometheus-node-exporter"
    port_env = "HFT_NODE_EXPORTER_PORT"

    def port(self) -> int:
        return self.config.node_exporter_port

    def arguments(self) -> list[str]:
        return [f"--web.listen-address={self.host_address}:{self.port()}"]


class RedisExporter(_Exporter):
    name = "redis-exporter"
    program = "prometheus-redis-exporter"
    port_env = "HFT_REDIS_EXPORTER_PORT"

    def port(self) -> int:
        return self.config.redis_exporter_port

    def arguments(self) -> list[str]:
        from hft.redis_conn import USER

        tls = self.tls_files()
        scheme, ca = ("rediss", ["-tls-ca-cert-file", str(tls.ca)]) if tls is not None else ("redis", [])
        return ["-web.listen-address", f"{self.host_address}:{self.port()}",
                "-redis.addr", f"{scheme}://{self.config.redis_node_address(1)}:{self.config.redis_node_port(1)}",
                "-redis.user", USER, *ca]

    def env(self) -> dict[str, str]:
        """The password in the environment (``REDIS_PASSWORD``), not on the command line."""
        from hft.redis_conn import credentials

        return {**super().env(), "REDIS_PASSWORD": credentials(self.config.redis_node_url(1)).password or ""}


#: How long Alertmanager waits to group a new alert, and between notifications of a group that changed.
GROUP_WAIT, GROUP_INTERVAL = "5s", "30s"


class Alertmanager(Service):
    name = "alertmanager"
    start_timeout = 30.0

    @property
    def home(self) -> Path:
        return self.config.run_dir / "alertmanager"

    @property
    def config_file(self) -> Path:
        return self.home / "alertmanager.yml"

    def ports(self) -> dict[str, int]:
        return {"HFT_ALERTMANAGER_PORT": self.config.alertmanager_port}

    def address(self) -> str:
        return f"{self.config.http_scheme}://{self.host_address}:{self.config.alertmanager_port}"

    def markers(self) -> list[str]:
        return ["prometheus-alertmanager", f"--config.file={self.config_file}"]

    def check(self) -> None:
        _program("prometheus-alertmanager")
        infra_file("alertmanager", "alertmanager.yml.template")

    def prepare(self) -> tuple[list[str], Path]:
        from hft.observability.alert_hook import webhook_token
        from hft.stack.base import write_private

        assert self.config.home is not None
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        token_file = self.home / "webhook-token"
        write_private(token_file, webhook_token(self.config.home))
        tls = self.tls_files()
        render(infra_file("alertmanager", "alertmanager.yml.template"), self.config_file,
               group_wait=GROUP_WAIT, group_interval=GROUP_INTERVAL, hook_url=AlertHook(self.config).address(),
               token_file=token_file, tls_config=f"{{ca_file: {tls.ca}}}" if tls is not None else "{}")
        web_config, _ = write_web_config(self.home, self.config, tls)
        argv = [_program("prometheus-alertmanager"), f"--config.file={self.config_file}",
                f"--web.config.file={web_config}",
                f"--storage.path={self.home / 'data'}",
                f"--web.listen-address={self.host_address}:{self.config.alertmanager_port}",
                "--cluster.listen-address=",  # one instance: no gossip port (it would listen on all interfaces)
                f"--web.external-url={self.address()}"]
        return argv, self.home

    def health(self) -> tuple[bool, str]:
        return http_ok(f"{self.address()}/-/ready", auth=ui_credentials(self.config))


class AlertHook(Service):
    """The project's webhook behind Alertmanager (:mod:`hft.observability.alert_hook`)."""

    name = "alert-hook"
    start_timeout = 30.0

    def ports(self) -> dict[str, int]:
        return {"HFT_ALERT_HOOK_PORT": self.config.alert_hook_port}

    def address(self) -> str:
        return f"{self.config.http_scheme}://{self.host_address}:{self.config.alert_hook_port}/alerts"

    def markers(self) -> list[str]:
        return ["hft.observability.alert_hook", "--port", str(self.config.alert_hook_port)]

    def check(self) -> None:
        pass  # this package

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HFT_HOME"] = str(self.config.home)
        return env

    def prepare(self) -> tuple[list[str], Path]:
        import sys

        tls = self.tls_files()
        https = ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)] if tls is not None else []
        return [sys.executable, "-m", "hft.observability.alert_hook", "--host", self.host_address,
                "--port", str(self.config.alert_hook_port), "--redis", self.config.redis_url, *https], self.config.run_dir

    def health(self) -> tuple[bool, str]:
        return http_ok(f"{self.config.http_scheme}://{self.host_address}:{self.config.alert_hook_port}/health")
