"""What every service of the local stack has: a pid file, a log, ports, a health check, and how it starts.

A service is a subclass of :class:`Service` filling in ``ports``, ``address``, ``markers``, ``check``,
``prepare`` and ``health``; :mod:`hft.stack.services` starts, waits for and stops them together.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import string
from dataclasses import dataclass
from pathlib import Path

from hft.stack import process
from hft.stack.config import StackConfig, StackError
from hft.tls import urlopen as tls_urlopen

log = logging.getLogger("hft.stack")

SETUP_HINT = "run `make setup`"


@dataclass(frozen=True)
class ServiceStatus:
    """What ``status`` knows about one service.

    Attributes:
        running: a process started by ``hft stack up`` (per its pid file) is alive.
        healthy: the address answers the service's health check (Kafka metadata, Redis PING, MLflow /health).
        pid: the running process, else None.
        address: what clients use (bootstrap servers, Redis URL, MLflow URI).
        detail: one line for people.
    """

    name: str
    running: bool
    healthy: bool
    pid: int | None
    address: str
    detail: str


# -- the services ----------------------------------------------------------------------------------------------
class Service:
    name: str = ""
    start_timeout: float = 60.0
    stop_timeout: float = 30.0
    port_env: str = ""

    def __init__(self, config: StackConfig):
        self.config = config

    @property
    def host_address(self) -> str:
        """The address this service binds (its host's in the hosts file; 127.0.0.1 without one)."""
        return self.config.address_of(self.name)

    def tls_files(self):
        """This host's TLS files (:func:`hft.tls.host_files`) when the deployment uses TLS, else None."""
        if not self.config.tls:
            return None
        from hft.tls import TlsError, host_files

        assert self.config.home is not None and self.config.hosts is not None
        first = self.config.hosts.hosts[0].address == self.host_address  # the one that may make the CA
        try:
            return host_files(self.config.home, self.config.run_dir, self.host_address, create_ca=first)
        except TlsError as e:
            raise StackError(f"{self.name}: {e}") from None

    # Paths.
    @property
    def pid_file(self) -> Path:
        return self.config.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.config.run_dir / f"{self.name}.log"

    # To fill in.
    def ports(self) -> dict[str, int]:  # {env variable that moves it: port}
        raise NotImplementedError

    def address(self) -> str:
        raise NotImplementedError

    def markers(self) -> list[str]:
        """Substrings of ``/proc/<pid>/cmdline`` that identify our process."""
        raise NotImplementedError

    def check(self) -> None:
        """Prerequisites (programs, jars, templates): StackError naming the fix when one is missing."""
        raise NotImplementedError

    def prepare(self) -> tuple[list[str], Path]:
        """Write configs and data folders; the argv and its working directory."""
        raise NotImplementedError

    def health(self) -> tuple[bool, str]:
        raise NotImplementedError

    #: The umask of the service's process (-1: hft's own); 0o077 where it rewrites a file holding a secret.
    umask = -1

    def env(self) -> dict[str, str]:
        """The child's environment: this one's, with the stack's ``HFT_HOME`` (where hft processes find the
        stack's secrets and files)."""
        return {**child_env(), "HFT_HOME": str(self.config.home)}

    def stop_signal(self) -> int:
        """What ``down`` sends first (SIGKILL follows after ``stop_timeout``)."""
        return signal.SIGTERM

    # Shared.
    def pid(self) -> int | None:
        """The pid of our running process; a stale pid file is removed."""
        pid = process.read_pid(self.pid_file)
        if pid is None:
            self.pid_file.unlink(missing_ok=True)  # unreadable: no use to anyone
            return None
        if process.matches(pid, self.markers()):
            return pid
        log.info("removing stale pid file %s (pid %d no longer runs %s)", self.pid_file, pid, self.name)
        self.pid_file.unlink(missing_ok=True)
        return None

    def check_ports(self) -> None:
        for env, port in self.ports().items():
            if process.port_in_use(port, self.host_address):
                raise StackError(
                    f"{self.name}: port {self.host_address}:{port} is already in use by {process.port_owner(port)}; "
                    f"stop it or pick another port with {env}=..."
                )

    def safe_health(self) -> tuple[bool, str]:
        if not all(process.port_open(p, self.host_address) for p in self.ports().values()):
            return False, "port not open"
        try:
            return self.health()
        except StackError:
            raise
        except Exception as e:  # noqa: BLE001 - a health check reports, never raises
            return False, f"{type(e).__name__}: {e}"


def child_env() -> dict[str, str]:
    """This process's environment for a service: the JVM's global option variables left out (they would
    land on Kafka's and spark-submit's command lines), and so is the deployment CA's key (``HFT_TLS_CA_KEY``:
    only ``hft stack up`` issues certificates; a service, or the DAG code Airflow runs, holding it could
    issue itself one for any address)."""
    from hft.tls import CA_KEY_ENV

    env = dict(os.environ)
    env.pop("JAVA_TOOL_OPTIONS", None)
    env.pop("_JAVA_OPTIONS", None)
    env.pop(CA_KEY_ENV, None)
    return env


def java() -> str:
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").exists():
        return str(Path(home) / "bin" / "java")
    java = shutil.which("java")
    if not java:
        raise StackError(f"java not found (Kafka needs Java 17+): {SETUP_HINT}")
    return java


def basic_auth(user: str, password: str) -> str:
    """The ``Authorization`` header value of HTTP basic auth."""
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def http_ok(url: str, timeout: float = 3.0, auth: tuple[str, str] | None = None) -> tuple[bool, str]:
    """(healthy, detail) of a service's HTTP health endpoint: a 200 answer (``auth``: basic-auth user, password)."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if auth:
        request.add_header("Authorization", basic_auth(*auth))
    try:
        with tls_urlopen(request, timeout=timeout) as resp:
            return resp.status == 200, f"{url.rsplit('/', 1)[-1] or url}: {resp.status}"
    except (urllib.error.URLError, OSError) as e:
        return False, f"{url} failed: {e}"


def token(nbytes: int = 24) -> str:
    """A random URL-safe secret of ``nbytes`` bytes that does not start with ``-`` (a password handed to a command
    line tool as an argument would be taken for an option: CI saw ``airflow users create --password -xyz`` fail)."""
    import secrets

    while True:
        value = secrets.token_urlsafe(nbytes)
        if not value.startswith("-"):
            return value


def secret(home: Path, name: str, env: str, nbytes: int = 24) -> str:
    """A secret of the stack: the environment variable ``env`` when set, else generated once (``nbytes`` random
    bytes, URL-safe) into ``<home>/secrets/<name>`` (0600) and read from there."""
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    path = Path(home) / "secrets" / name
    if not path.exists():
        write_private(path, token(nbytes) + "\n")
        log.warning("generated a secret in %s (set %s to choose one)", path, env)
    return path.read_text().strip()


def mlflow_credentials(config: StackConfig) -> tuple[str, str]:
    """(user, password) of the MLflow server's admin (MLflow's basic-auth app): ``HFT_MLFLOW_PASSWORD``, else
    generated once into ``<HFT_HOME>/secrets/mlflow-password`` (0600)."""
    from hft.stack.config import MLFLOW_PASSWORD_ENV, MLFLOW_SECRET, MLFLOW_USER

    assert config.home is not None
    return MLFLOW_USER, secret(config.home, MLFLOW_SECRET, MLFLOW_PASSWORD_ENV)


def config_secret(home: Path, name: str, env: str) -> str:
    """:func:`secret`, checked to fit unquoted in a server's configuration file (Redis's, a JAAS line): at least
    12 characters, no spaces, quotes or backslashes."""
    value = secret(home, name, env)
    if not re.fullmatch(r"[^\s\"'\\]{12,}", value):
        raise StackError(f"{env} must be at least 12 characters without spaces, quotes or backslashes")
    return value


def write_private(path: Path, text: str) -> None:
    """Write a secret: mode 0600 from the start, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def render(template: Path, target: Path, private: bool = False, **values: object) -> None:
    """``template`` with ``values`` filled in, written to ``target`` (``private``: it holds a secret, 0600)."""
    text = string.Template(template.read_text()).substitute({k: str(v) for k, v in values.items()})
    if private:
        write_private(target, text)
        return
    tmp = target.with_suffix(target.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(target)
