"""`hft demo` itself, through the real executable, on a smaller market: every step runs and says what it did,
the stream's Spark log goes to a file (not the terminal), and the executor's orders reach Kafka."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ports import free_port

pytestmark = pytest.mark.integration


@pytest.mark.slow  # ~100 s: make test-slow (CI runs it)
def test_demo_runs_end_to_end_on_a_small_market(tmp_path):
    env = {**os.environ, "HFT_HOME": str(tmp_path), "HFT_KAFKA_PORT": str(free_port()),
           "HFT_KAFKA_CONTROLLER_PORT": str(free_port()), "HFT_KAFKA_METRICS_PORT": str(free_port()),
           "HFT_REDIS_PORT": str(free_port()), "HFT_MLFLOW_PORT": str(free_port()),
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
           "HFT_MODEL_FOLDS": "2", "HFT_MODEL_BOOTSTRAP": "200"}
    hft = str(Path(sys.executable).with_name("hft"))
    proc = subprocess.run([hft, "demo", "--master", "local[2]", "--start", "2024-01-02", "--end", "2024-02-29",
                           "--held-back", "2024-03-01"], env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for step in range(1, 7):
        assert f"[{step}/6]" in out
    assert re.search(r"^ *ticker +rows +sessions +up_share", out, re.M), "the feature summary lacks its column names"
    assert "gate: " in out and ("promoted to champion" in out or "DEMO ONLY: promoting it past the gate" in out)
    predictions = int(re.search(r"(\d+) predictions in Redis", out).group(1))
    decided = re.search(r"(\d+) predictions decided: (\d+) orders, (\d+) fills", out)
    assert predictions > 0 and int(decided.group(1)) == predictions
    in_kafka = int(re.search(r"Kafka `orders` holds (\d+) records", out).group(1))
    assert int(decided.group(2)) > 0 and in_kafka >= int(decided.group(2)) + int(decided.group(3))
    log = tmp_path / "demo-run" / "logs" / "predict_stream.log"
    assert log.stat().st_size > 0 and "Streaming query made progress" in log.read_text()
    assert "Streaming query made progress" not in proc.stderr  # Spark's progress is in the log file
