"""hft.backup pieces without services: where a backup may go, its manifest check, the MLflow path rewrite."""

from __future__ import annotations

import json
import sqlite3

import pytest

from hft.backup import FORMAT, _files, _folder, _rewrite_paths, verify
from hft.errors import UserError


def test_backups_go_to_folders_or_file_uris(tmp_path):
    assert _folder(str(tmp_path / "b")) == tmp_path / "b"
    assert _folder(f"file://{tmp_path}/b") == tmp_path / "b"
    with pytest.raises(UserError, match="object store"):
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
