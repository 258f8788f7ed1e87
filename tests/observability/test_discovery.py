"""File-based service discovery: a process announces its /metrics, and the file goes when it exits."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hft.observability.discovery import prune, register, targets_dir


def test_register_writes_a_file_sd_target_and_prune_keeps_live_processes(tmp_path):
    path = register("stream", 9108, home=tmp_path)
    assert path.parent == targets_dir(tmp_path) == tmp_path / "run" / "prometheus" / "targets"
    [entry] = json.loads(path.read_text())
    assert entry["targets"] == ["127.0.0.1:9108"] and entry["labels"]["component"] == "stream"
    assert prune(path.parent) == [] and path.exists()  # this process runs
    path.unlink()


@pytest.mark.parametrize("bad", ["", "Stream", "a b", "x" * 50, "../etc"])
def test_bad_component_names_are_refused(tmp_path, bad):
    with pytest.raises(ValueError, match="component"):
        register(bad, 9108, home=tmp_path)


def test_a_process_removes_its_target_on_exit_and_a_killed_ones_is_pruned(tmp_path):
    code = ("import sys, os; from pathlib import Path; from hft.observability.discovery import register; "
            "p = register('executor', 9109, home=Path(sys.argv[1])); print(p, flush=True); "
            "os._exit(9) if sys.argv[2] == 'crash' else None")
    clean = subprocess.run([sys.executable, "-c", code, str(tmp_path), "exit"], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr
    assert not (tmp_path / clean.stdout.strip()).exists()  # atexit removed it
    crashed = subprocess.run([sys.executable, "-c", code, str(tmp_path), "crash"], capture_output=True, text=True)
    assert crashed.returncode == 9
    left = targets_dir(tmp_path) / crashed.stdout.strip().rsplit("/", 1)[-1]
    assert left.exists()  # a crash leaves it: Prometheus then sees the target down
    assert prune(left.parent) == [left] and not left.exists()
