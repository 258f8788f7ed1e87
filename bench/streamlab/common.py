"""Paths, constants and small helpers shared by the parts of bench/streaming.py: CPU accounting from /proc
and the engine subprocess."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HOME = ROOT / "var" / "bench-streaming"
VENV_BIN = Path(sys.executable).parent
ENTRY = ROOT / "bench" / "streaming.py"  # the benchmark's entry point; its hidden flags start the workers
SUSTAIN_FRACTION = 0.95
TARGET_RATE, TARGET_P99_MS = 5000, 500.0


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def say(text: str = "") -> None:
    print(text, flush=True)


def load_avg() -> str:
    return "load %.2f %.2f %.2f" % os.getloadavg()


def pct(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(values, q)) if len(values) else float("nan")


def pid_ticks(pid: int | None) -> int:
    """utime + stime (clock ticks) of one process; 0 when there is none."""
    st = _stat_fields(f"/proc/{pid}/stat") if pid is not None else None
    return int(st[1][11]) + int(st[1][12]) if st else 0


def _stat_fields(path: str) -> tuple[str, list[str]] | None:
    """(comm, the fields after it) of a /proc/.../stat file; None when it is gone."""
    try:
        with open(path) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.index("(") + 1: stat.rindex(")")], stat[stat.rindex(")") + 2:].split()


def _group(pgid: int) -> list[str]:
    """The pids of every live process in a process group (field 5 of stat, pgrp)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat_fields(f"/proc/{entry}/stat")) and int(st[1][2]) == pgid:
            out.append(entry)
    return out


def cpu_ticks(pgid: int) -> int:
    """utime + stime (clock ticks; fields 14, 15 of stat) of every live process in a process group."""
    return sum(pid_ticks(int(pid)) for pid in _group(pgid))


def jit_ticks(pgid: int) -> int:
    """utime + stime (clock ticks) of the JIT compiler threads (HotSpot's "C1/C2 CompilerThreadN") of every
    live process in a process group: a JVM still compiling spends cores on it that steady state does not."""
    total = 0
    for pid in _group(pgid):
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            st = _stat_fields(f"/proc/{pid}/task/{tid}/stat")
            if st and "CompilerThre" in st[0]:
                total += int(st[1][11]) + int(st[1][12])
    return total


class Engine:
    """A subprocess in its own session (so the whole tree can be signalled), output to a log file."""

    def __init__(self, name: str, cmd: list[str], log_path: Path, env: dict, groups: tuple[int, ...] = ()):
        """``groups``: more process groups whose CPU is the engine's (a Spark worker's: its executors')."""
        self.name = name
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=ROOT)
        self.groups = (self.proc.pid, *groups)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def cpu_ticks(self) -> int:
        return sum(cpu_ticks(g) for g in self.groups)

    def jit_ticks(self) -> int:
        return sum(jit_ticks(g) for g in self.groups)

    def log_text(self) -> str:
        self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def tail(self, n: int = 25) -> str:
        lines = [ln for ln in self.log_text().splitlines() if not ln.startswith("\tat ")]
        return "\n".join(lines[-n:])

    def stop(self, timeout: float = 30.0) -> None:
        if self.alive():
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # whatever is left of the group (JVM, python workers): SIGKILL
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self.log_file.close()


def spark_ui_port() -> int:
    """A free port whose next two are free too: a standalone master's web UI and its workers' (+1, +2)."""
    import socket

    while True:
        base = free_ports(1)[0]
        try:
            for p in (base + 1, base + 2):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
