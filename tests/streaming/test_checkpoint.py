"""The streaming job's checkpoint settings, measured on a real Spark query: a local checkpoint is written
without a process forked per micro-batch (Spark's default manager forks ``readlink`` for every rename)."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _job():
    spec = importlib.util.spec_from_file_location("predict_stream", ROOT / "streaming" / "predict_stream.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _forks() -> int:
    """Processes created on this machine since boot (/proc/stat)."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("processes "):
            return int(line.split()[1])
    raise AssertionError("no 'processes' line in /proc/stat")


def _forks_per_batch(spark, checkpoint: Path, batches: int = 20) -> tuple[float, int]:
    """Run a one-row-per-batch query to ``batches`` micro-batches; the machine's forks per batch after its
    first 3 (start-up excluded), and the last committed batch id found in the checkpoint."""
    seen: list[int] = []
    query = (spark.readStream.format("rate-micro-batch").option("rowsPerBatch", 1).load()
             .writeStream.foreachBatch(lambda _df, batch_id: seen.append(batch_id))
             .option("checkpointLocation", str(checkpoint)).trigger(processingTime="0 seconds").start())
    try:
        deadline = time.monotonic() + 120
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        forks, first = _forks(), len(seen)
        while len(seen) < first + batches and time.monotonic() < deadline:
            time.sleep(0.01)
        forks, done = _forks() - forks, len(seen) - first
    finally:
        query.stop()
    assert done >= batches, f"only {done} micro-batches in 120 s"
    commits = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    return forks / done, commits[-1]


def test_local_checkpoint_is_written_without_forking_a_process_per_batch(spark, tmp_path):
    job = _job()
    # Spark's default manager: the test sees its forks (readlink and chmod per file), so it can fail.
    before, _ = _forks_per_batch(spark, tmp_path / "default")
    assert before >= 1.5, f"{before:.2f} forks per batch with Spark's default checkpoint manager"
    try:
        job.apply_checkpoint_conf(spark, str(tmp_path / "ck"))
        assert spark.conf.get(job.CHECKPOINT_MANAGER_CONF) == job.LOCAL_CHECKPOINT_MANAGER
        after, last = _forks_per_batch(spark, tmp_path / "ck")
        assert after < 0.5, f"{after:.2f} forks per batch with the job's checkpoint manager"
        # The checkpoint stays usable: a restart resumes after the last committed batch, no batch id skipped.
        _forks_per_batch(spark, tmp_path / "ck", batches=2)
        commits = sorted(int(p.name) for p in (tmp_path / "ck" / "commits").iterdir() if p.name.isdigit())
        assert commits[-1] > last and commits == list(range(commits[0], commits[-1] + 1))
        assert not list((tmp_path / "ck").rglob("*.crc")), "checksum sidecars written"
        assert not [p for p in (tmp_path / "ck").rglob("*") if p.name.startswith(".")], "temporary files left"
    finally:
        spark.conf.unset(job.CHECKPOINT_MANAGER_CONF)


def test_checkpoint_conf_for_local_paths_only():
    job = _job()
    assert job.checkpoint_conf("/var/ck") == job.checkpoint_conf("file:///var/ck") == \
        {job.CHECKPOINT_MANAGER_CONF: job.LOCAL_CHECKPOINT_MANAGER}


@pytest.mark.parametrize("uri", ["hdfs://namenode:8020/ck", "s3a://bucket/ck"])
def test_remote_checkpoints_keep_sparks_default_manager(uri):
    assert _job().checkpoint_conf(uri) == {}
