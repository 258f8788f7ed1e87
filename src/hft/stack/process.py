"""Detached processes found again through pid files, and who holds a port (Linux ``/proc``)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from hft.stack.config import HOST

# Children started by this Python process, kept so they are reaped (no zombies, no ResourceWarning).
_children: dict[int, subprocess.Popen] = {}


# -- /proc -----------------------------------------------------------------------------------------------------
def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, process group, parent pid) of ``pid``, or None when there is no such process."""
    return _stat_of(f"/proc/{pid}/stat")


def _stat_of(path: str) -> tuple[str, int, int] | None:
    try:
        raw = Path(path).read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[2]), int(fields[1])


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _running(pid: int, state: str) -> bool:
    """Whether process ``pid`` in ``state`` (its leading thread's) still runs: a zombie leader whose other threads
    have not exited yet still holds its files and sockets (a JVM shutting down: its main thread is gone first)."""
    if state == "X":
        return False
    if state != "Z":
        return True
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            st = _stat_of(f"/proc/{pid}/task/{tid}/stat")
            if st is not None and st[0] not in ("Z", "X"):
                return True
    return False


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not, unless threads of it still run)."""
    _reap(pid)
    st = _stat(pid)
    return st is not None and _running(pid, st[0])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def matches(pid: int, markers: Sequence[str]) -> bool:
    """Whether ``pid`` runs and its command line holds every marker (guards against a reused pid)."""
    if not alive(pid):
        return False
    line = cmdline(pid)
    return bool(line) and all(m in line for m in markers)


def group_alive(pgid: int) -> list[int]:
    """Live (non-zombie) members of process group ``pgid``."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None and st[1] == pgid and _running(int(entry), st[0]):
                out.append(int(entry))
    return out


# -- pid files -------------------------------------------------------------------------------------------------
def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def write_pid(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


# -- start / stop ----------------------------------------------------------------------------------------------
def spawn(argv: Sequence[str], log_path: Path, *, cwd: Path, env: dict[str, str] | None = None,
          umask: int = -1) -> int:
    """Start ``argv`` in its own session (it outlives the caller), output appended to ``log_path``; ``umask``
    (-1: the caller's) for the files it creates."""
    with open(log_path, "ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=cwd, env=env, start_new_session=True, close_fds=True, umask=umask,
        )
    _children[proc.pid] = proc
    return proc.pid


def terminate(pid: int, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """``sig`` (SIGTERM) to ``pid``'s process group (``pid`` leads it: it was spawned in a new session), SIGKILL
    whatever is left after ``timeout`` seconds. True when it had to be killed."""
    st = _stat(pid)
    group = st is not None and st[1] == pid

    def send(sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:
                os.killpg(pid, sig)
            else:
                os.kill(pid, sig)

    def gone() -> bool:
        return not alive(pid) and (not group or not group_alive(pid))

    send(sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone():
            return False
        time.sleep(0.1)
    send(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not gone():
        time.sleep(0.1)
    return True


# -- ports -----------------------------------------------------------------------------------------------------
def port_in_use(port: int, host: str = HOST) -> bool:
    """Whether something listens on ``host:port`` (a bind that a server would do fails)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def port_open(port: int, host: str = HOST, timeout: float = 0.5) -> bool:
    """Whether ``host:port`` accepts a TCP connection."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _listening() -> list[tuple[str, int, str]]:
    """Every listening TCP socket of this machine: (local address, port, socket inode)."""
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                f = line.split()
                if len(f) > 9 and f[3] == "0A":
                    hex_addr, hex_port = f[1].rsplit(":", 1)
                    out.append((_address(hex_addr), int(hex_port, 16), f[9]))
    return out


def _address(hex_addr: str) -> str:
    """/proc/net/tcp's local address (each 32-bit word in host byte order) as text; an IPv4-mapped IPv6 address
    (a JVM's socket bound to 127.0.0.1 is ``::ffff:127.0.0.1``) as the IPv4 address it accepts."""
    raw = b"".join(int(hex_addr[i:i + 8], 16).to_bytes(4, "little") for i in range(0, len(hex_addr), 8))
    if len(raw) == 16 and raw[:12] == b"\0" * 10 + b"\xff\xff":
        raw = raw[12:]
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, raw)


def _listen_inodes(port: int) -> set[str]:
    return {inode for _, p, inode in _listening() if p == port}


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children, their children, ...)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            children.setdefault(st[2], []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def listening_sockets(pids: Sequence[int]) -> list[tuple[int, str, int]]:
    """(pid, local address, port) of every listening TCP socket held by ``pids``."""
    by_inode = {f"socket:[{inode}]": (addr, port) for addr, port, inode in _listening()}
    out = []
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    hit = by_inode.get(os.readlink(f"/proc/{pid}/fd/{fd}"))
                    if hit is not None:
                        out.append((pid, *hit))
    return sorted(set(out))


def port_owner(port: int) -> str:
    """Best-effort 'pid N (command)' of the process listening on ``port``."""
    inodes = _listen_inodes(port)
    if inodes:
        targets = {f"socket:[{i}]" for i in inodes}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError):
                for fd in os.listdir(f"/proc/{entry}/fd"):
                    with contextlib.suppress(OSError):
                        if os.readlink(f"/proc/{entry}/fd/{fd}") in targets:
                            line = cmdline(int(entry))
                            return f"pid {entry} ({line[:120]})" if line else f"pid {entry}"
    return "another process"


# -- misc ------------------------------------------------------------------------------------------------------
def tail(path: Path, lines: int = 25, start: int = 0) -> str:
    """The last ``lines`` lines of ``path`` written after byte offset ``start``."""
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock file, so two ``hft stack`` commands do not start the same service twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
