"""hft.backup pieces: where a backup may go, its manifest check, the MLflow path rewrite; and a whole backup to
an S3 bucket (a moto S3 server on 127.0.0.1) restored from it into a fresh home."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hft.backup import FORMAT, _files, _folder, _rewrite_paths, backup, restore, verify
from hft.errors import UserError


def test_backups_go_to_folders_or_file_uris(tmp_path):
    assert _folder(str(tmp_path / "b")) == tmp_path / "b"
    assert _folder(f"file://{tmp_path}/b") == tmp_path / "b"
    with pytest.raises(UserError, match="not a folder"):
        _folder("s3://bucket/backups")


def test_verify_refuses_a_backup_that_changed_or_lacks_a_file(tmp_path):
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "events.bin").write_bytes(b"\x01" * 64)
    (tmp_path / "redis.rdb").write_bytes(b"REDIS0011")
    (tmp_path / "manifest.json").write_text(json.dumps({"format": FORMAT, "files": _files(tmp_path)}))
    assert set(verify(tmp_path)["files"]) == {"journal/events.bin", "redis.rdb"}
    (tmp_path / "journal" / "events.bin").write_bytes(b"\x02" * 64)
    with pytest.raises(UserError, match="changed since the backup: journal/events.bin"):
        verify(tmp_path)
    (tmp_path / "redis.rdb").unlink()
    with pytest.raises(UserError, match="2 file"):
        verify(tmp_path)
    with pytest.raises(UserError, match="no backup"):
        verify(tmp_path / "journal")


def test_the_mlflow_store_follows_its_artifacts_to_the_new_home(tmp_path):
    db = tmp_path / "mlflow.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE runs (run_uuid VARCHAR(32), artifact_uri VARCHAR(200), lifecycle TEXT, n INTEGER)")
    con.execute("INSERT INTO runs VALUES ('r1', '/old/home/mlartifacts/1/r1/artifacts', 'active', 3)")
    con.execute("INSERT INTO runs VALUES ('r2', 'file:///old/home/mlartifacts/1/r2', 'active', 4)")
    con.execute("INSERT INTO runs VALUES ('r3', '/elsewhere/x', 'active', 5)")
    con.commit()
    con.close()
    assert _rewrite_paths(db, "/old/home/mlartifacts", "/new/home/mlartifacts") == 2
    rows = sqlite3.connect(db).execute("SELECT artifact_uri FROM runs ORDER BY run_uuid").fetchall()
    assert [r[0] for r in rows] == ["/new/home/mlartifacts/1/r1/artifacts", "file:///new/home/mlartifacts/1/r2",
                                    "/elsewhere/x"]


@pytest.fixture
def s3(monkeypatch, tmp_path):
    """A moto S3 server on a free loopback port with bucket ``backups``; yields the URI query that reaches it."""
    from pyarrow import fs

    from ports import free_port

    port = free_port()
    server = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "moto.log", "wb"))  # noqa: SIM115
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    query = f"endpoint_override=127.0.0.1:{port}&scheme=http&region=us-east-1"
    store = fs.S3FileSystem(access_key="test", secret_key="test", endpoint_override=f"127.0.0.1:{port}", scheme="http",
                            region="us-east-1", allow_bucket_creation=True)
    deadline = time.monotonic() + 30
    while True:
        try:
            store.create_dir("backups")
            break
        except OSError:
            assert server.poll() is None and time.monotonic() < deadline, (tmp_path / "moto.log").read_text()[-2000:]
            time.sleep(0.2)
    yield query, store
    server.terminate()
    server.wait(10)


def _home(root: Path) -> dict:
    """A small home: journal, MLflow store naming its artifacts, artifacts, a lake file."""
    (root / "executor").mkdir(parents=True)
    (root / "executor" / "events.bin").write_bytes(os.urandom(56 * 10))
    (root / "mlartifacts" / "1").mkdir(parents=True)
    (root / "mlartifacts" / "1" / "model_weights.h5").write_bytes(os.urandom(5000))
    con = sqlite3.connect(root / "mlflow.db")
    con.execute("CREATE TABLE runs (run_uuid VARCHAR(32), artifact_uri VARCHAR(200))")
    con.execute("INSERT INTO runs VALUES ('r1', ?)", (str(root / "mlartifacts" / "1"),))
    con.commit()
    con.close()
    (root / "lake" / "bars").mkdir(parents=True)
    (root / "lake" / "bars" / "part-0.parquet").write_bytes(os.urandom(3000))
    return {"journal": root / "executor", "tracking_uri": f"sqlite:///{root / 'mlflow.db'}", "lake_root": str(root / "lake")}


def test_a_backup_goes_to_an_s3_bucket_and_restores_from_it_into_a_fresh_home(s3, redis_url, tmp_path):
    import redis
    from pyarrow import fs

    query, store = s3
    redis.Redis.from_url(redis_url).set("hft:exec:published", 42)
    old = _home(tmp_path / "old")
    uri = f"s3://backups/2026-12-04?{query}"
    manifest = backup(uri, redis_url, old["journal"], old["tracking_uri"], old["lake_root"])
    listed = store.get_file_info(fs.FileSelector("backups/2026-12-04", recursive=True))
    objects = sorted(i.path for i in listed if i.type == fs.FileType.File)
    assert objects == sorted(f"backups/2026-12-04/{n}" for n in [*manifest["files"], "manifest.json"])
    with pytest.raises(UserError, match="already holds objects"):
        backup(uri, redis_url, old["journal"], old["tracking_uri"], old["lake_root"])

    new_root = tmp_path / "new"
    new_root.mkdir()
    new = {"journal": new_root / "executor", "tracking_uri": f"sqlite:///{new_root / 'mlflow.db'}",
           "lake_root": str(new_root / "lake")}
    restore(uri, new_root, new_root / "redis", new["journal"], new["tracking_uri"], new["lake_root"])
    for rel in ("executor/events.bin", "mlartifacts/1/model_weights.h5", "lake/bars/part-0.parquet"):
        assert (new_root / rel).read_bytes() == (tmp_path / "old" / rel).read_bytes(), rel
    assert sqlite3.connect(new_root / "mlflow.db").execute("SELECT artifact_uri FROM runs").fetchone()[0] == \
        str(new_root / "mlartifacts" / "1")
    assert (new_root / "redis" / "appendonlydir" / "appendonly.aof.1.base.rdb").stat().st_size > 0
    shutil.rmtree(new_root)
    with pytest.raises(UserError, match="no backup"):
        restore(f"s3://backups/nothing-here?{query}", new_root, new_root / "redis", new["journal"],
                new["tracking_uri"], new["lake_root"])
    with pytest.raises(UserError, match="cannot open this object store"):
        backup("nosuchscheme://bucket/x", redis_url, old["journal"], old["tracking_uri"], old["lake_root"])
