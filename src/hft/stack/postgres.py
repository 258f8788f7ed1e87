"""PostgreSQL in the local stack: the production backend of MLflow and Airflow (``HFT_METADATA_DB=postgres``).

The server is Debian's PostgreSQL (``make setup`` installs it), initialised by the stack into
``HFT_POSTGRES_DATA`` (default ``<HFT_HOME>/run/postgres``) and started on ``127.0.0.1:HFT_POSTGRES_PORT`` (5433)
with TCP only (no Unix socket) and password authentication (SCRAM). The database owner is ``hft`` with
``HFT_POSTGRES_PASSWORD``; when that is unset a password is generated once into
``<HFT_HOME>/secrets/postgres-password`` (0600). Each client gets its own database (``mlflow``, ``airflow``),
created when that client first starts: :func:`ensure_database`, :func:`database_url`.

PostgreSQL refuses to run as root: when the stack runs as root, the server and ``initdb`` run as the
``postgres`` system user (Debian's package creates it), which owns the data folder and must be able to reach
it (a folder under a private ``/root`` cannot be; set ``HFT_POSTGRES_DATA`` then).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from hft.config import env_value
from hft.stack.base import SETUP_HINT, Service, secret
from hft.stack.config import StackConfig, StackError

log = logging.getLogger("hft.stack")

USER = "hft"
SYSTEM_USER = "postgres"  # who runs the server when the stack runs as root


def password(config: StackConfig) -> str:
    """The ``hft`` role's password: ``HFT_POSTGRES_PASSWORD``, else generated once (0600) beside HFT_HOME's secrets."""
    assert config.home is not None
    return secret(config.home, "postgres-password", "HFT_POSTGRES_PASSWORD")


def database_url(config: StackConfig, database: str, driver: str = "postgresql+psycopg2") -> str:
    """The SQLAlchemy URL of one of the stack's databases (holds the password: never log it); with TLS it asks
    libpq for ``sslmode=verify-full`` against the deployment's CA (asyncpg: :func:`async_url`)."""
    query = "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in ssl_params(config).items()) if config.tls else ""
    return (f"{driver}://{USER}:{quote(password(config), safe='')}@{config.address_of('postgres')}:"
            f"{config.postgres_port}/{database}{query}")


def ssl_params(config: StackConfig) -> dict[str, str]:
    """libpq's TLS parameters for the stack's PostgreSQL: none without TLS; else the server's certificate and
    address checked against the deployment's CA (a file on this machine: :func:`hft.tls.ca_file`)."""
    if not config.tls:
        return {}
    from hft.tls import ca_file

    return {"sslmode": "verify-full", "sslrootcert": str(ca_file(config.home))}


def async_url(sync_url: str) -> str | None:
    """The asyncpg URL of a TLS ``database_url`` (asyncpg takes ``ssl=verify-full`` and finds the CA in
    ``PGSSLROOTCERT``, not libpq's parameters); None for a URL without them (Airflow derives its own)."""
    if "sslmode=verify-full" not in sync_url:
        return None
    base = sync_url.split("?", 1)[0].replace("postgresql+psycopg2://", "postgresql+asyncpg://", 1)
    return base + "?ssl=verify-full"


def _connect(config: StackConfig, database: str = "postgres", timeout: int = 3):
    import psycopg2

    return psycopg2.connect(host=config.address_of("postgres"), port=config.postgres_port, user=USER, password=password(config),
                            dbname=database, connect_timeout=timeout, **ssl_params(config))


def ensure_database(config: StackConfig, name: str) -> bool:
    """Create database ``name`` (owned by ``hft``) unless it exists; True when it was created."""
    import psycopg2

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
        raise StackError(f"not a database name: {name!r}")
    try:
        conn = _connect(config)
    except psycopg2.OperationalError as e:
        raise StackError(f"PostgreSQL at {config.address_of('postgres')}:{config.postgres_port} is not reachable ({str(e).strip()}); "
                         "start it with `HFT_METADATA_DB=postgres hft stack up`") from None
    try:
        conn.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cur.fetchone() is not None:
                return False
            cur.execute(f'CREATE DATABASE "{name}" OWNER {USER} ENCODING \'UTF8\'')
            log.info("PostgreSQL: created database %s", name)
            return True
    finally:
        conn.close()


def _bindir() -> Path:
    """The newest installed PostgreSQL's programs (Debian: ``/usr/lib/postgresql/<major>/bin``)."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise StackError(f"PostgreSQL (initdb, postgres) not found: {SETUP_HINT}")


def _as_server_user() -> list[str]:
    """The argv prefix that runs a PostgreSQL program as a user it accepts (``postgres`` when we are root)."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        raise StackError("setpriv (util-linux) not found: it runs PostgreSQL as the postgres user")
    return [setpriv, f"--reuid={SYSTEM_USER}", f"--regid={SYSTEM_USER}", "--init-groups", "--"]


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, SYSTEM_USER, SYSTEM_USER)


class Postgres(Service):
    name = "postgres"
    start_timeout = 60.0
    stop_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        assert self.config.postgres_data is not None  # StackConfig fills it in
        return self.config.postgres_data

    def ports(self) -> dict[str, int]:
        return {"HFT_POSTGRES_PORT": self.config.postgres_port}

    def address(self) -> str:
        return f"postgresql://{USER}@{self.host_address}:{self.config.postgres_port}"

    def markers(self) -> list[str]:
        return ["postgres", "-D", str(self.data_dir)]

    def check(self) -> None:
        _bindir()
        _as_server_user()
        if os.geteuid() == 0:
            try:
                import pwd

                pwd.getpwnam(SYSTEM_USER)
            except KeyError:
                raise StackError(f"user {SYSTEM_USER!r} not found (the Debian postgresql package creates it): "
                                 f"{SETUP_HINT}") from None

    def _reachable(self) -> None:
        """As root: the postgres user must be able to reach and write the data folder."""
        if os.geteuid() != 0:
            return
        probe = subprocess.run([*_as_server_user(), "test", "-w", str(self.data_dir)], capture_output=True)
        if probe.returncode != 0:
            raise StackError(
                f"postgres: PostgreSQL runs as the {SYSTEM_USER!r} user (it refuses root) and cannot reach "
                f"{self.data_dir} (a folder above it is private to root?); set HFT_POSTGRES_DATA to a folder it "
                "can reach, e.g. /var/lib/hft/postgres"
            )

    def prepare(self) -> tuple[list[str], Path]:
        bindir = _bindir()
        fresh = not (self.data_dir / "PG_VERSION").exists()
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _give_to_server_user(self.data_dir)
        self._reachable()
        if fresh:
            self._initdb(bindir)
        argv = [
            *_as_server_user(), str(bindir / "postgres"), "-D", str(self.data_dir),
            "-c", f"listen_addresses={self.host_address}", "-c", f"port={self.config.postgres_port}",
            "-c", "unix_socket_directories=",  # TCP on its address only
            "-c", "log_destination=stderr", "-c", "logging_collector=off",  # into <run_dir>/postgres.log
            "-c", f"hba_file={self._write_hba()}", *self._tls_options(),
        ]
        return argv, self.data_dir

    def _server_file(self, name: str, text: str) -> Path:
        """A file of the server's in its data folder: 0600, owned by the user it runs as."""
        from hft.stack.base import write_private

        path = self.data_dir / name
        write_private(path, text)
        _give_to_server_user(path)
        return path

    def _write_hba(self) -> Path:
        """Who may connect (written on every start): any address that reaches the server's (it listens on its
        host's only) as a role with its password (SCRAM); with TLS, encrypted connections only."""
        kind = "hostssl" if self.config.tls else "host"
        return self._server_file("hft_hba.conf", f"# written by hft.stack on every start\n"
                                                 f"{kind} all all all scram-sha-256\n"
                                                 + ("hostnossl all all all reject\n" if self.config.tls else ""))

    def _tls_options(self) -> list[str]:
        """With TLS: the host's certificate and key (copied into the data folder, where the server user may read
        them, as PostgreSQL wants its key: 0600 and its own)."""
        tls = self.tls_files()
        if tls is None:
            return ["-c", "ssl=off"]
        cert = self._server_file("hft_server.crt", tls.cert.read_text())
        key = self._server_file("hft_server.key", tls.key.read_text())
        return ["-c", "ssl=on", "-c", f"ssl_cert_file={cert}", "-c", f"ssl_key_file={key}",
                "-c", "ssl_min_protocol_version=TLSv1.2"]

    def _initdb(self, bindir: Path) -> None:
        fd, pwfile = tempfile.mkstemp(prefix="hft-pg-", text=True)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(password(self.config) + "\n")
            _give_to_server_user(Path(pwfile))
            argv = [*_as_server_user(), str(bindir / "initdb"), "-D", str(self.data_dir), "-U", USER,
                    f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C.UTF-8"]
            log.info("initialising PostgreSQL in %s", self.data_dir)
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=180, cwd=self.data_dir)
        finally:
            os.unlink(pwfile)
        with open(self.log_file, "a") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} initdb (exit {proc.returncode})\n"
                    f"{proc.stdout[-4000:]}{proc.stderr[-4000:]}")
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise StackError(f"postgres: initdb in {self.data_dir} failed (exit {proc.returncode}):\n{tail}")

    def stop_signal(self) -> int:
        return signal.SIGINT  # "fast" shutdown: SIGTERM ("smart") would wait for every client to disconnect

    def health(self) -> tuple[bool, str]:
        import psycopg2

        try:
            conn = _connect(self.config)
        except psycopg2.OperationalError as e:
            return False, f"connect failed: {str(e).strip().splitlines()[0] if str(e).strip() else e}"
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW server_version")
                return True, f"PostgreSQL {cur.fetchone()[0]}"
        finally:
            conn.close()


def metadata_url(config: StackConfig, app: str) -> str:
    """Where ``app`` (``mlflow``, ``mlflow_auth``: the MLflow server's users, or ``airflow``) keeps its state, as
    an SQLAlchemy URL.

    ``HFT_MLFLOW_DB_URL`` / ``HFT_MLFLOW_AUTH_DB_URL`` / ``HFT_AIRFLOW_DB_URL`` when set (a managed PostgreSQL,
    say); else database ``app`` on the stack's PostgreSQL when ``HFT_METADATA_DB=postgres``; else the embedded
    SQLite file (``<HFT_HOME>/mlflow.db``, ``<HFT_HOME>/mlflow-auth.db``, ``<HFT_HOME>/airflow/airflow.db``).
    """
    assert config.home is not None  # StackConfig fills it in
    home = config.home
    files = {"mlflow": lambda: home / "mlflow.db", "mlflow_auth": lambda: home / "mlflow-auth.db",
             "airflow": lambda: config.airflow_home / "airflow.db"}
    if app not in files:
        raise StackError(f"no metadata database for {app!r}")
    explicit = env_value(f"HFT_{app.upper()}_DB_URL", "")
    if explicit:
        return explicit
    if config.metadata_db == "postgres":
        return database_url(config, app)
    return f"sqlite:///{files[app]()}"


def prepare_database(config: StackConfig, url: str) -> bool:
    """Before a client starts: its database on the stack's PostgreSQL exists (other URLs are left alone).
    True when it was created just now (the client's schema must be made)."""
    prefix = f"{config.address_of('postgres')}:{config.postgres_port}/"
    if config.metadata_db == "postgres" and url.startswith("postgresql") and prefix in url:
        return ensure_database(config, url.rsplit("/", 1)[1].split("?", 1)[0])
    return False
