"""hft backup / restore with MLflow on the stack's PostgreSQL (``HFT_METADATA_DB=postgres``): pg_dump into the
backup, pg_restore into a fresh stack's PostgreSQL with the artifact paths moved to the new home; a database
that already holds tables is refused unless forced."""

from __future__ import annotations

import shutil

import pytest

from hft.backup import backup, restore
from hft.errors import UserError
from hft.stack import down, up
from hft.stack.postgres import _connect, ensure_database, metadata_url, password
from ports import postgres_data_dir

pytestmark = pytest.mark.integration


def test_a_postgres_mlflow_store_is_dumped_and_restored_into_a_fresh_stack(tmp_path, make_stack_config, redis_url,
                                                                            monkeypatch):
    old_data, new_data = postgres_data_dir(), postgres_data_dir()
    old = make_stack_config(tmp_path / "old", metadata_db="postgres", postgres_data=old_data)
    new = make_stack_config(tmp_path / "new", metadata_db="postgres", postgres_data=new_data)
    old_artifacts = tmp_path / "old" / "mlartifacts"
    (old_artifacts / "1").mkdir(parents=True)
    (old_artifacts / "1" / "model_weights.h5").write_bytes(b"weights" * 100)
    try:
        up(old, ["postgres"])
        ensure_database(old, "mlflow")
        conn = _connect(old, "mlflow")
        with conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE runs (run_uuid VARCHAR(32), artifact_uri VARCHAR(200), n INTEGER)")
            cur.execute("INSERT INTO runs VALUES ('r1', %s, 1), ('r2', '/elsewhere', 2)", (f"{old_artifacts}/1",))
        conn.close()
        monkeypatch.setenv("HFT_HOME", str(tmp_path / "old"))  # where the stack's MLflow keeps its artifacts
        manifest = backup(str(tmp_path / "backup"), redis_url, tmp_path / "old" / "executor",
                          metadata_url(old, "mlflow"), str(tmp_path / "old" / "lake"))
        assert "mlflow.pgdump" in manifest["files"] and manifest["parts"]["mlflow"]["kind"] == "postgresql"
        assert password(old) not in (tmp_path / "backup" / "manifest.json").read_text()
        down(old, ["postgres"])

        up(new, ["postgres"])
        home = tmp_path / "new"
        args = (home, home / "run" / "redis", home / "executor", metadata_url(new, "mlflow"), str(home / "lake"))
        restore(str(tmp_path / "backup"), *args)
        conn = _connect(new, "mlflow")
        with conn, conn.cursor() as cur:
            cur.execute("SELECT run_uuid, artifact_uri, n FROM runs ORDER BY run_uuid")
            assert cur.fetchall() == [("r1", f"{home / 'mlartifacts'}/1", 1), ("r2", "/elsewhere", 2)]
        conn.close()
        assert (home / "mlartifacts" / "1" / "model_weights.h5").read_bytes() == b"weights" * 100

        shutil.rmtree(home / "run" / "redis")  # only MLflow's database is left to refuse the next restore
        with pytest.raises(UserError, match="already holds tables"):
            restore(str(tmp_path / "backup"), *args)
        restore(str(tmp_path / "backup"), *args, force=True)
        conn = _connect(new, "mlflow")
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM runs")
            assert cur.fetchone()[0] == 2
        conn.close()
        with pytest.raises(UserError, match="MLflow store is PostgreSQL"):
            restore(str(tmp_path / "backup"), home, home / "r2", home / "j2", f"sqlite:///{home / 'm.db'}",
                    str(home / "lake2"))
    finally:
        down(old)
        down(new)
        shutil.rmtree(old_data.parent, ignore_errors=True)
        shutil.rmtree(new_data.parent, ignore_errors=True)
