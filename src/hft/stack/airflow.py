"""Airflow in the local stack: the API server (UI and REST API), the scheduler (LocalExecutor) and the DAG processor.

Everything lives in ``AIRFLOW_HOME = <HFT_HOME>/airflow``: ``airflow.cfg`` (rendered from
``infra/airflow/airflow.cfg.template``), the task logs, the embedded SQLite database and the generated secrets.

Authentication is Airflow's FAB auth manager (users and roles in the metadata database). The admin user is
``HFT_AIRFLOW_ADMIN_USER`` (default ``admin``) with ``HFT_AIRFLOW_ADMIN_PASSWORD``; when that is unset a password
is generated once, written to ``<AIRFLOW_HOME>/admin-password`` (mode 0600) and logged once. The secrets Airflow
needs (the JWT secret that signs REST API tokens, the API secret key, the Fernet key encrypting connections)
come from their ``AIRFLOW__...`` variables when set, else are generated once into
``<AIRFLOW_HOME>/secrets.json`` (0600). The metadata database is :func:`hft.stack.postgres.metadata_url`'s:
SQLite in ``AIRFLOW_HOME`` by default, database ``airflow`` on the stack's PostgreSQL with
``HFT_METADATA_DB=postgres`` (production), or ``HFT_AIRFLOW_DB_URL``.

Every socket binds 127.0.0.1: the API server by configuration, and the scheduler runs with
``--skip-serve-logs`` so its task-log server (which listens on all interfaces) is not started; the API server
reads the task logs from the shared log folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from hft.config import env_count, env_value
from hft.stack.base import SETUP_HINT, Service, child_env, render, token, write_private
from hft.stack.config import StackConfig, StackError, infra_file, repo_root
from hft.stack.postgres import metadata_url, prepare_database
from hft.tls import urlopen as tls_urlopen

log = logging.getLogger("hft.stack")

#: A scheduler or DAG processor whose last heartbeat is older than this is not healthy.
HEARTBEAT_GRACE_S = 60.0
_SECRET_VARS = ("AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__CORE__FERNET_KEY")


@dataclass(frozen=True)
class AirflowSettings:
    """How the stack's Airflow is set up (environment, read by :meth:`from_env`).

    Attributes:
        db_url: the metadata database (SQLAlchemy URL, :func:`hft.stack.postgres.metadata_url`).
        admin_user: ``HFT_AIRFLOW_ADMIN_USER`` (default ``admin``).
        admin_password: ``HFT_AIRFLOW_ADMIN_PASSWORD``; None: generated once into ``<AIRFLOW_HOME>/admin-password``.
        parallelism: ``HFT_AIRFLOW_PARALLELISM`` (default 4): task processes the LocalExecutor runs at once.
    """

    db_url: str
    admin_user: str
    admin_password: str | None
    parallelism: int

    @classmethod
    def from_env(cls, config: StackConfig) -> AirflowSettings:
        try:
            parallelism = env_count("HFT_AIRFLOW_PARALLELISM", 4)
        except ValueError as exc:
            raise StackError(str(exc)) from None
        return cls(
            db_url=metadata_url(config, "airflow"),
            admin_user=env_value("HFT_AIRFLOW_ADMIN_USER", "admin"),
            admin_password=os.environ.get("HFT_AIRFLOW_ADMIN_PASSWORD") or None,
            parallelism=parallelism,
        )


def _generated_secrets(home: Path) -> dict[str, str]:
    """The secrets from ``<home>/secrets.json``, generating the missing ones (0600)."""
    path = home / "secrets.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = [k for k in _SECRET_VARS if not saved.get(k)]
    if missing:
        from cryptography.fernet import Fernet

        for key in missing:
            saved[key] = Fernet.generate_key().decode() if key.endswith("FERNET_KEY") else token(48)
        write_private(path, json.dumps(saved, indent=2) + "\n")
    return saved


def admin_credentials(config: StackConfig) -> tuple[str, str]:
    """The admin user and password of the stack's Airflow (the password generated once when not in the env)."""
    settings = AirflowSettings.from_env(config)
    if settings.admin_password:
        return settings.admin_user, settings.admin_password
    path = config.airflow_home / "admin-password"
    if not path.exists():
        write_private(path, token(18) + "\n")
        log.warning("Airflow: generated a password for user %r, stored in %s (set HFT_AIRFLOW_ADMIN_PASSWORD "
                    "to choose one)", settings.admin_user, path)
    return settings.admin_user, path.read_text().strip()


def airflow_login(config: StackConfig) -> tuple[str, str]:
    """The admin user and where its password is (for people: never the password itself)."""
    settings = AirflowSettings.from_env(config)
    where = ("from HFT_AIRFLOW_ADMIN_PASSWORD" if settings.admin_password
             else f"in {config.airflow_home / 'admin-password'}")
    return settings.admin_user, where


def _async_db(config: StackConfig, db_url: str) -> dict[str, str]:
    """With TLS to the stack's PostgreSQL: Airflow's async engine (asyncpg) gets its own URL and the CA."""
    from hft.stack.postgres import async_url, ssl_params

    url = async_url(db_url)
    if url is None:
        return {}
    return {"AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": url, "PGSSLROOTCERT": ssl_params(config)["sslrootcert"]}


def airflow_env(config: StackConfig) -> dict[str, str]:
    """The environment of every Airflow process of the stack (and of ``airflow`` commands run against it)."""
    home = config.airflow_home
    settings = AirflowSettings.from_env(config)
    venv_bin = str(Path(sys.executable).parent)
    env = child_env()
    generated = _generated_secrets(home)
    for key in _SECRET_VARS:
        if not env.get(key):
            env[key] = generated[key]
    env.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW_CONFIG": str(home / "airflow.cfg"),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": settings.db_url,
        **_async_db(config, settings.db_url),
        "PATH": f"{venv_bin}:{env.get('PATH', '')}",
        "HFT_HOME": str(config.home),
        "PYSPARK_PYTHON": env.get("PYSPARK_PYTHON") or sys.executable,
        "GX_ANALYTICS_ENABLED": env.get("GX_ANALYTICS_ENABLED") or "False",
    })
    env.setdefault("AIRFLOW_CONN_SPARK_DEFAULT", '{"conn_type": "spark", "host": "local[2]"}')
    return env


def _airflow_binary() -> Path:
    binary = Path(sys.executable).parent / "airflow"
    if not binary.exists():
        raise StackError(f"{binary} not found (apache-airflow is not installed in this environment): {SETUP_HINT}")
    return binary


def _run_airflow(config: StackConfig, args: list[str], log_file: Path, timeout: float = 300) -> str:
    proc = subprocess.run([str(_airflow_binary()), *args], env=airflow_env(config), capture_output=True, text=True,
                          timeout=timeout, cwd=config.airflow_home)
    with open(log_file, "a") as f:
        f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} airflow {args[0]} {args[1] if len(args) > 1 else ''} "
                f"(exit {proc.returncode})\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise StackError(f"airflow {' '.join(args[:2])} failed (exit {proc.returncode}):\n{tail}")
    return proc.stdout + proc.stderr


def bootstrap(config: StackConfig, log_file: Path, tls=None) -> None:
    """Write airflow.cfg; migrate the metadata database and create or reset the admin user when they changed.

    With ``tls`` (the host's :class:`hft.tls.HostFiles`) the API server serves HTTPS only, and Airflow's own
    clients of it (the task runners' execution API) trust the deployment's CA alone.

    Idempotent and cheap when nothing changed (a stamp of the database URL, Airflow's version and the admin
    credentials); ``airflow db migrate`` and ``airflow users create`` each take a few seconds otherwise.
    """
    from importlib.metadata import version

    home = config.airflow_home
    settings = AirflowSettings.from_env(config)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    render(infra_file("airflow", "airflow.cfg.template"), home / "airflow.cfg",
           dags_folder=repo_root() / "dags", parallelism=settings.parallelism, base_url=config.airflow_url,
           host=config.address_of("airflow-api"), port=config.airflow_port, log_folder=home / "logs",
           ssl="" if tls is None else (f"ssl_cert = {tls.cert}\nssl_key = {tls.key}\nssl_ca_file = {tls.ca}\n"
                                       "client_use_public_certs = False"))
    user, password = admin_credentials(config)
    new_database = prepare_database(config, settings.db_url)
    stamp_file = home / ".bootstrap"
    stamp = hashlib.sha256(f"{settings.db_url}\n{version('apache-airflow')}\n{user}\n{password}".encode()).hexdigest()
    if not new_database and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return
    log.info("Airflow: migrating the metadata database %s", _redact(settings.db_url))
    _run_airflow(config, ["db", "migrate"], log_file, timeout=600)
    # --password=VALUE: a password that starts with "-" (one chosen in HFT_AIRFLOW_ADMIN_PASSWORD) is not an option
    created = _run_airflow(config, ["users", "create", "--username", user, f"--password={password}", "--role",
                                    "Admin", "--firstname", "HFT", "--lastname", "Admin", "--email",
                                    f"{user}@localhost"], log_file)
    if f"{user} already exists" in created:  # the password may have changed: make it the configured one
        _run_airflow(config, ["users", "reset-password", "--username", user, f"--password={password}"], log_file)
    stamp_file.write_text(stamp + "\n")


def _redact(url: str) -> str:
    """A database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url


def heartbeats(db_url: str) -> dict[str, datetime]:
    """The newest heartbeat of each running Airflow job type (``SchedulerJob``, ``DagProcessorJob``, ...)."""
    import sqlalchemy as sa

    engine = sa.create_engine(db_url, poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT job_type, MAX(latest_heartbeat) FROM job WHERE state = 'running' GROUP BY job_type"
            )).all()
    finally:
        engine.dispose()
    out = {}
    for job_type, beat in rows:
        if isinstance(beat, str):
            beat = datetime.fromisoformat(beat)
        if beat is not None:
            out[job_type] = beat if beat.tzinfo else beat.replace(tzinfo=timezone.utc)
    return out


class _Airflow(Service):
    stop_timeout = 45.0
    start_timeout = 180.0

    def check(self) -> None:
        _airflow_binary()
        infra_file("airflow", "airflow.cfg.template")

    def env(self) -> dict[str, str]:
        return airflow_env(self.config)

    def address(self) -> str:
        return self.config.airflow_url

    def ports(self) -> dict[str, int]:
        return {}

    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> tuple[list[str], Path]:
        bootstrap(self.config, self.log_file, self.tls_files())
        return [str(_airflow_binary()), *self.command()], self.config.airflow_home


class AirflowApi(_Airflow):
    name = "airflow-api"

    def ports(self) -> dict[str, int]:
        return {"HFT_AIRFLOW_PORT": self.config.airflow_port}

    def markers(self) -> list[str]:
        # The API server renames itself 'airflow api_server -- host:127.0.0.1 port:P'.
        return ["airflow", "api", f"{self.config.airflow_port}"]

    def command(self) -> list[str]:
        return ["api-server", "--host", self.host_address, "--port", str(self.config.airflow_port), "--workers", "1"]

    def health(self) -> tuple[bool, str]:
        try:
            with tls_urlopen(f"{self.config.airflow_url}/api/v2/monitor/health", timeout=5) as resp:
                body = json.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            return False, f"/api/v2/monitor/health failed: {e}"
        db = body.get("metadatabase", {}).get("status")
        return db == "healthy", f"UI and REST API at {self.config.airflow_url} (metadatabase {db})"


class _Heartbeating(_Airflow):
    job_type = ""

    def health(self) -> tuple[bool, str]:
        db_url = AirflowSettings.from_env(self.config).db_url
        if db_url.startswith("sqlite:///") and not Path(db_url[len("sqlite:///"):]).exists():
            return False, "no metadata database yet"
        beats = heartbeats(db_url)
        beat = beats.get(self.job_type)
        if beat is None:
            return False, f"no running {self.job_type} heartbeat yet"
        age = (datetime.now(timezone.utc) - beat).total_seconds()
        return age <= HEARTBEAT_GRACE_S, f"last heartbeat {age:.0f}s ago"


class AirflowScheduler(_Heartbeating):
    name = "airflow-scheduler"
    job_type = "SchedulerJob"

    def markers(self) -> list[str]:
        return ["airflow", "scheduler", "--skip-serve-logs"]

    def command(self) -> list[str]:
        # No task-log server: it would listen on 0.0.0.0:8793, and the API server reads the log folder itself.
        return ["scheduler", "--skip-serve-logs"]


class AirflowDagProcessor(_Heartbeating):
    name = "airflow-dag-processor"
    job_type = "DagProcessorJob"

    def markers(self) -> list[str]:
        return ["airflow", "dag-processor"]

    def command(self) -> list[str]:
        return ["dag-processor"]
