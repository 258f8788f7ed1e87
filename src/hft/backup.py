"""``hft backup`` / ``hft restore``: the lake, the MLflow store and its artifacts, Redis and the executor's journal.

One point in time: Redis is snapshotted first (an RDB the server streams to us, ``redis-cli --rdb``: its
predictions, the stream's committed Kafka offsets, the executor's consumer group), then the journal. The
journal is the executor's source of truth and can only be *ahead* of the snapshot: a prediction the restored
group delivers again was decided in the journal already, and the executor refuses it as a duplicate. So a
restore repeats no order and keeps every position; the reverse order could have repeated orders.

A backup is a folder (a path or a ``file://`` URI) or an object-store prefix (``s3://bucket/prefix``, any URI
``pyarrow.fs.FileSystem.from_uri`` opens: credentials from the environment as the AWS SDK reads them, an S3-compatible
server with ``?endpoint_override=host:port&scheme=http``), holding ``manifest.json`` (what, when, sizes, SHA-256 of every
file), ``redis.rdb``, ``journal/``, ``mlflow.db`` (SQLite's online backup: consistent while MLflow writes) or
``mlflow.pgdump`` (``pg_dump``'s custom format, when MLflow runs on PostgreSQL),
``mlartifacts/`` and ``lake/``. :func:`restore` puts them into a fresh ``HFT_HOME`` (stack stopped), rewriting
the MLflow store's artifact paths to the new home. To an object store, the backup is made in a local staging
folder and uploaded, ``manifest.json`` last (a prefix without it is no backup); a restore downloads it first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hft.errors import UserError

log = logging.getLogger(__name__)

FORMAT = 1


def _is_local(uri: str) -> bool:
    return urlsplit(uri).scheme in ("", "file")


def _folder(uri: str) -> Path:
    if _is_local(uri):
        parts = urlsplit(uri)
        return Path(parts.path if parts.scheme else uri).absolute()
    raise UserError(f"{uri}: not a folder or a file:// URI")


def _object_store(uri: str) -> tuple[Any, str]:
    """(pyarrow filesystem, path in it) of an object-store URI; UserError saying why it cannot be opened."""
    from pyarrow import fs

    try:
        store, path = fs.FileSystem.from_uri(uri)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises ArrowInvalid, OSError, ValueError...
        raise UserError(f"{uri}: cannot open this object store: {exc}") from None
    return store, path.rstrip("/")


def _remote_files(store, path: str) -> list[str]:
    """Paths (relative to ``path``) of every object under ``path``."""
    from pyarrow import fs

    try:
        infos = store.get_file_info(fs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as exc:
        raise UserError(f"cannot list {path}: {exc}") from None
    return sorted(i.path[len(path) + 1:] for i in infos if i.type == fs.FileType.File)


def _upload(local: Path, store, path: str) -> None:
    """Every file of ``local`` to ``path``, manifest.json last."""
    names = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    names.sort(key=lambda n: n == "manifest.json")
    for name in names:
        with open(local / name, "rb") as src, store.open_output_stream(f"{path}/{name}") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)


@contextmanager
def _staged(source: str):
    """The backup at ``source`` as a local folder: itself, or a download of the object-store prefix."""
    if _is_local(source):
        yield _folder(source)
        return
    store, path = _object_store(source)
    names = _remote_files(store, path)
    if "manifest.json" not in names:
        raise UserError(f"{source} holds no backup (no manifest.json)")
    with tempfile.TemporaryDirectory(prefix="hft-restore-") as tmp:
        for name in names:
            (Path(tmp) / name).parent.mkdir(parents=True, exist_ok=True)
            with store.open_input_stream(f"{path}/{name}") as src, open(Path(tmp) / name, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        yield Path(tmp)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> dict[str, dict]:
    return {str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def _is_postgres(tracking_uri: str) -> bool:
    return tracking_uri.startswith("postgresql")


def _sqlite_store(tracking_uri: str) -> Path:
    if not tracking_uri.startswith("sqlite:///"):
        raise UserError(f"MLflow store {urlsplit(tracking_uri).scheme}://...: hft backup copies a SQLite or a "
                        "PostgreSQL store")
    return Path(tracking_uri[len("sqlite:///"):])


def _pg(url: str) -> dict[str, str]:
    """libpq's connection settings of a (SQLAlchemy) PostgreSQL URL; the password travels in PGPASSWORD, never
    on a command line."""
    from urllib.parse import parse_qs

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    tls = {env: query[key][0] for key, env in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT"))
           if key in query}  # the stack's PostgreSQL over TLS (hft.stack.postgres.ssl_params)
    return {"PGHOST": parts.hostname or "127.0.0.1", "PGPORT": str(parts.port or 5432),
            "PGUSER": unquote(parts.username or ""), "PGPASSWORD": unquote(parts.password or ""),
            "PGDATABASE": parts.path.lstrip("/").split("?", 1)[0], **tls}


def _pg_where(pg: dict[str, str]) -> str:
    return f"postgresql://{pg['PGHOST']}:{pg['PGPORT']}/{pg['PGDATABASE']}"


def _pg_run(program: str, args: list[str], pg: dict[str, str], what: str) -> None:
    import os

    from hft.stack.postgres import _bindir

    proc = subprocess.run([str(_bindir() / program), *args], env={**os.environ, **pg}, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise UserError(f"{what} of MLflow's database at {_pg_where(pg)} failed: {proc.stderr.strip()[-1500:]}")


def _pg_connect(pg: dict[str, str], database: str | None = None):
    import psycopg2

    try:
        return psycopg2.connect(host=pg["PGHOST"], port=int(pg["PGPORT"]), user=pg["PGUSER"], password=pg["PGPASSWORD"],
                                dbname=database or pg["PGDATABASE"], connect_timeout=5,
                                sslmode=pg.get("PGSSLMODE", "prefer"), sslrootcert=pg.get("PGSSLROOTCERT"))
    except psycopg2.OperationalError as exc:
        raise UserError(f"PostgreSQL at {pg['PGHOST']}:{pg['PGPORT']} is not reachable ({str(exc).strip()}): start it "
                        "first (`HFT_METADATA_DB=postgres hft stack up --services postgres`)") from None


def _prepare_pg(url: str, force: bool) -> None:
    """The MLflow database of ``url`` ready to load a dump: created if missing; refused if it holds tables, unless
    ``force`` (then emptied)."""
    pg = _pg(url)
    conn = _pg_connect(pg, "postgres")
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (pg["PGDATABASE"],))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{pg["PGDATABASE"]}" ENCODING \'UTF8\'')
    finally:
        conn.close()
    conn = _pg_connect(pg)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
            if cur.fetchone()[0]:
                if not force:
                    raise UserError(f"MLflow's database at {_pg_where(pg)} already holds tables (restore into a fresh "
                                    "stack, or --force)")
                cur.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    finally:
        conn.close()


def _load_pg(dump: Path, url: str, old_artifacts: str, new_artifacts: str) -> None:
    """Load ``dump`` (pg_dump's custom format) into the prepared database, then move its artifact paths."""
    pg = _pg(url)
    _pg_run("pg_restore", ["--no-owner", "--exit-on-error", "--dbname", pg["PGDATABASE"], str(dump)], pg, "pg_restore")
    conn = _pg_connect(pg)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' "
                        "AND data_type IN ('character varying', 'text')")
            for table, column in cur.fetchall():
                cur.execute(f'UPDATE "{table}" SET "{column}" = REPLACE("{column}", %s, %s) '
                            f'WHERE strpos("{column}", %s) > 0', (old_artifacts, new_artifacts, old_artifacts))
    finally:
        conn.close()


def backup(target: str, redis_url: str, journal: Path, tracking_uri: str, lake_root: str) -> dict:
    """Write a backup to ``target`` (an empty or new folder, or an object-store prefix without objects); returns
    its manifest."""
    if _is_local(target):
        return _backup(_folder(target), redis_url, journal, tracking_uri, lake_root)
    store, path = _object_store(target)
    if _remote_files(store, path):
        raise UserError(f"{target} already holds objects: back up under a new prefix")
    with tempfile.TemporaryDirectory(prefix="hft-backup-") as tmp:
        manifest = _backup(Path(tmp) / "backup", redis_url, journal, tracking_uri, lake_root)
        try:
            _upload(Path(tmp) / "backup", store, path)
        except OSError as exc:
            raise UserError(f"uploading the backup to {target} failed: {exc}") from None
    return manifest


def _backup(out: Path, redis_url: str, journal: Path, tracking_uri: str, lake_root: str) -> dict:
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: back up into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"format": FORMAT, "started": time.time(), "parts": {}}
    # 1. Redis, first (see the module's docstring)
    from hft.redis_conn import cli_login, master_address

    host, port = master_address(redis_url)
    cli = shutil.which("redis-cli")
    if cli is None:
        raise UserError("redis-cli not found: run `make setup`")
    login, login_env = cli_login(redis_url)
    proc = subprocess.run([cli, "-h", host, "-p", str(port), *login, "--rdb", str(out / "redis.rdb")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **login_env})
    if proc.returncode != 0 or not (out / "redis.rdb").exists():
        raise UserError(f"Redis at {host}:{port} did not give a snapshot: {(proc.stderr or proc.stdout).strip()}")
    manifest["parts"]["redis"] = {"from": f"{host}:{port}", "at": time.time()}
    # 2. the executor's journal (append-only: a copy taken after the snapshot is ahead of it, never behind)
    if journal.exists():
        shutil.copytree(journal, out / "journal")
        manifest["parts"]["journal"] = {"from": str(journal), "at": time.time()}
    else:
        manifest["parts"]["journal"] = {"from": str(journal), "missing": True}
    # 3. MLflow: SQLite's online backup, or pg_dump (one transaction's snapshot); then the artifacts
    if _is_postgres(tracking_uri):
        from hft.model.registry import artifact_root

        pg = _pg(tracking_uri)
        _pg_run("pg_dump", ["--format=custom", "--no-owner", "--file", str(out / "mlflow.pgdump")], pg, "pg_dump")
        artifacts = Path(artifact_root(tracking_uri) or "")
        if artifacts.exists():
            shutil.copytree(artifacts, out / "mlartifacts")
        manifest["parts"]["mlflow"] = {"from": _pg_where(pg), "kind": "postgresql", "artifacts": str(artifacts),
                                       "at": time.time()}
        store = None
    else:
        store = _sqlite_store(tracking_uri)
    if store is not None and store.exists():
        src, dst = sqlite3.connect(store), sqlite3.connect(out / "mlflow.db")
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        artifacts = store.parent / "mlartifacts"
        if artifacts.exists():
            shutil.copytree(artifacts, out / "mlartifacts")
        manifest["parts"]["mlflow"] = {"from": str(store), "kind": "sqlite", "artifacts": str(artifacts),
                                       "at": time.time()}
    elif store is not None:
        manifest["parts"]["mlflow"] = {"from": str(store), "missing": True}
    # 4. the lake (files written once: a copy is a consistent set of whole files)
    lake = _folder(lake_root) if "://" not in lake_root or lake_root.startswith("file://") else None
    if lake is None:
        raise UserError(f"the lake {lake_root} is not a local folder: sync it with the object store's own tool")
    if lake.exists():
        shutil.copytree(lake, out / "lake")
    manifest["parts"]["lake"] = {"from": str(lake), "missing": not lake.exists(), "at": time.time()}
    manifest["files"] = _files(out)
    manifest["finished"] = time.time()
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def verify(source: Path) -> dict:
    """The manifest of the backup in ``source``, every file present with its recorded size and SHA-256."""
    path = source / "manifest.json"
    if not path.exists():
        raise UserError(f"{source} holds no backup (no manifest.json)")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT:
        raise UserError(f"{source}: backup format {manifest.get('format')!r}, this version reads {FORMAT}")
    bad = [name for name, meta in manifest["files"].items()
           if not (source / name).is_file() or _sha256(source / name) != meta["sha256"]]
    if bad:
        raise UserError(f"{source}: {len(bad)} file(s) missing or changed since the backup: {', '.join(bad[:5])}")
    return manifest


def _rewrite_paths(db: Path, old: str, new: str) -> int:
    """Point every text value of the MLflow store that names ``old`` (the backed-up home) at ``new``."""
    changed = 0
    con = sqlite3.connect(db)
    try:
        with con:
            tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
            for table in tables:
                for col in con.execute(f'PRAGMA table_info("{table}")').fetchall():
                    if "CHAR" in col[2].upper() or "TEXT" in col[2].upper():
                        cur = con.execute(f'UPDATE "{table}" SET "{col[1]}" = REPLACE("{col[1]}", ?, ?) '
                                          f'WHERE instr("{col[1]}", ?) > 0', (old, new, old))
                        changed += cur.rowcount
    finally:
        con.close()
    return changed


def restore(source: str, home: Path, redis_data: Path, journal: Path, tracking_uri: str, lake_root: str,
            force: bool = False) -> dict:
    """Put the backup in ``source`` into this home (its services stopped): Redis's snapshot as the base of
    ``redis_data``'s append-only file (loaded by the next ``hft stack up``), the journal, the MLflow store (its artifact paths moved to
    this home) and artifacts, the lake. Refuses to overwrite existing state unless ``force``."""
    with _staged(source) as src:
        return _restore(src, home, redis_data, journal, tracking_uri, lake_root, force)


def _restore(src: Path, home: Path, redis_data: Path, journal: Path, tracking_uri: str, lake_root: str,
             force: bool) -> dict:
    manifest = verify(src)
    postgres = _is_postgres(tracking_uri)
    if (src / "mlflow.pgdump").exists() != postgres and ((src / "mlflow.db").exists() or (src / "mlflow.pgdump").exists()):
        kind = "PostgreSQL" if (src / "mlflow.pgdump").exists() else "SQLite"
        raise UserError(f"the backup's MLflow store is {kind} and this home's is not: restore it where "
                        f"HFT_METADATA_DB={'postgres' if kind == 'PostgreSQL' else 'sqlite'}")
    store = None if postgres else _sqlite_store(tracking_uri)
    artifacts = home / "mlartifacts" if store is None else store.parent / "mlartifacts"
    lake = _folder(lake_root)
    existing = [p for p in (journal, store, lake, redis_data / "appendonlydir", redis_data / "dump.rdb")
                if p is not None and p.exists()]
    if existing and not force:
        raise UserError("restore would replace existing state: " + ", ".join(map(str, existing))
                        + " (restore into a fresh HFT_HOME, or --force)")
    if postgres and (src / "mlflow.pgdump").exists():
        _prepare_pg(tracking_uri, force)  # before anything is replaced: it may refuse
    for p in existing:
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    # Redis runs with the append-only file, which wins over dump.rdb at start: the snapshot becomes the AOF's
    # base (Redis 7's multi-part AOF takes an RDB base file), so the next start loads it.
    aof = redis_data / "appendonlydir"
    aof.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src / "redis.rdb", aof / "appendonly.aof.1.base.rdb")
    (aof / "appendonly.aof.manifest").write_text("file appendonly.aof.1.base.rdb seq 1 type b\n")
    if (src / "journal").exists():
        shutil.copytree(src / "journal", journal)
    old = str(Path(manifest["parts"].get("mlflow", {}).get("artifacts", "")))
    if (src / "mlflow.db").exists() or (src / "mlflow.pgdump").exists():
        if (src / "mlartifacts").exists():
            shutil.rmtree(artifacts, ignore_errors=True)
            shutil.copytree(src / "mlartifacts", artifacts)
    if store is not None and (src / "mlflow.db").exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src / "mlflow.db", store)
        _rewrite_paths(store, old, str(artifacts))
    elif postgres and (src / "mlflow.pgdump").exists():
        _load_pg(src / "mlflow.pgdump", tracking_uri, old, str(artifacts))
    if (src / "lake").exists():
        shutil.copytree(src / "lake", lake)
    log.info("restored the backup of %s from %s into %s", time.strftime("%Y-%m-%d %H:%M:%S",
             time.gmtime(manifest["started"])), src, home)
    return manifest
