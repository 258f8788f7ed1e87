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
import urllib.error
import urllib.request
from pathlib import Path

from hft.stack.base import SETUP_HINT, Service, render
from hft.stack.config import HOST, StackError, infra_file

#: How often Prometheus scrapes and evaluates the rules (the rules' `for:` durations assume it).
SCRAPE_INTERVAL = "5s"


def _program(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if not found:
        raise StackError(f"{name} not found (Debian package {name}): {SETUP_HINT}")
    return found


def _get(url: str) -> tuple[bool, str]:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status == 200, f"{url.rsplit('/', 1)[-1] or url}: {resp.status}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url} failed: {e}"


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
        from hft.observability.discovery import prune

        binary = _program("prometheus")
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        self.targets.mkdir(parents=True, exist_ok=True)
        prune(self.targets)  # processes that died since the last start: restarted, or gone for good
        rules = infra_file("prometheus", "prometheus.yml.template").parent / "rules"
        render(infra_file("prometheus", "prometheus.yml.template"), self.config_file,
               scrape_interval=SCRAPE_INTERVAL, rules_dir=rules, port=self.config.prometheus_port,
               node_port=self.config.node_exporter_port, redis_exporter_port=self.config.redis_exporter_port,
               targets_dir=self.targets, alertmanager_port=self.config.alertmanager_port,
               kafka_metrics_port=self.config.kafka_metrics_port, mlflow_port=self.config.mlflow_port)
        promtool = shutil.which("promtool")
        if promtool:  # a broken config or rule file fails here, with promtool's words, not in the server log
            checked = subprocess.run([promtool, "check", "config", str(self.config_file)], capture_output=True,
                                     text=True, timeout=60)
            if checked.returncode != 0:
                raise StackError(f"prometheus: {self.config_file} is not valid:\n{checked.stdout}{checked.stderr}")
        argv = [binary, f"--config.file={self.config_file}", f"--storage.tsdb.path={self.home / 'data'}",
                f"--web.listen-address={HOST}:{self.config.prometheus_port}", "--storage.tsdb.retention.time=15d",
                f"--web.external-url={self.config.prometheus_url}"]
        return argv, self.home

    def health(self) -> tuple[bool, str]:
        ok, detail = _get(f"{self.config.prometheus_url}/-/ready")
        return ok, f"UI and API at {self.config.prometheus_url}" if ok else detail


class _Exporter(Service):
    """A Prometheus exporter from Debian: ``program`` serving ``/metrics`` on 127.0.0.1:``port``."""

    start_timeout = 30.0
    program = ""

    def port(self) -> int:
        raise NotImplementedError

    def arguments(self) -> list[str]:
        raise NotImplementedError

    def ports(self) -> dict[str, int]:
        return {self.port_env: self.port()}

    def address(self) -> str:
        return f"http://{HOST}:{self.port()}/metrics"

    def markers(self) -> list[str]:
        return [self.program, f"{HOST}:{self.port()}"]

    def check(self) -> None:
        _program(self.program)

    def prepare(self) -> tuple[list[str], Path]:
        return [_program(self.program), *self.arguments()], self.config.run_dir

    def health(self) -> tuple[bool, str]:
        return _get(self.address())


class NodeExporter(_Exporter):
    name = "node-exporter"
    program = "prometheus-node-exporter"
    port_env = "HFT_NODE_EXPORTER_PORT"

    def port(self) -> int:
        return self.config.node_exporter_port

    def arguments(self) -> list[str]:
        return [f"--web.listen-address={HOST}:{self.port()}"]


class RedisExporter(_Exporter):
    name = "redis-exporter"
    program = "prometheus-redis-exporter"
    port_env = "HFT_REDIS_EXPORTER_PORT"

    def port(self) -> int:
        return self.config.redis_exporter_port

    def arguments(self) -> list[str]:
        return ["-web.listen-address", f"{HOST}:{self.port()}", "-redis.addr", self.config.redis_url]


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
        return f"http://{HOST}:{self.config.alertmanager_port}"

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
        render(infra_file("alertmanager", "alertmanager.yml.template"), self.config_file,
               group_wait=GROUP_WAIT, group_interval=GROUP_INTERVAL, hook_port=self.config.alert_hook_port,
               token_file=token_file)
        argv = [_program("prometheus-alertmanager"), f"--config.file={self.config_file}",
                f"--storage.path={self.home / 'data'}", f"--web.listen-address={HOST}:{self.config.alertmanager_port}",
                "--cluster.listen-address=",  # one instance: no gossip port (it would listen on all interfaces)
                f"--web.external-url={self.address()}"]
        return argv, self.home

    def health(self) -> tuple[bool, str]:
        return _get(f"{self.address()}/-/ready")


class AlertHook(Service):
    """The project's webhook behind Alertmanager (:mod:`hft.observability.alert_hook`)."""

    name = "alert-hook"
    start_timeout = 30.0

    def ports(self) -> dict[str, int]:
        return {"HFT_ALERT_HOOK_PORT": self.config.alert_hook_port}

    def address(self) -> str:
        return f"http://{HOST}:{self.config.alert_hook_port}/alerts"

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

        return [sys.executable, "-m", "hft.observability.alert_hook", "--port", str(self.config.alert_hook_port),
                "--redis", self.config.redis_url], self.config.run_dir

    def health(self) -> tuple[bool, str]:
        return _get(f"http://{HOST}:{self.config.alert_hook_port}/health")
