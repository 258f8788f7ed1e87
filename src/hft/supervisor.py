"""Keep a process running: restart it when it dies, with a backoff, and give up when it keeps dying.

``hft stream --supervise`` runs the streaming job's ``spark-submit`` under :func:`supervise`: a driver killed
(kill -9, out of memory, a lost machine's worth of JVM) comes back from its checkpoint and Redis's committed
offsets, which is what makes the restart lose and repeat nothing (:mod:`hft.streaming.store`).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RestartPolicy:
    """When to restart.

    Attributes:
        max_restarts: most restarts within ``window_s``; one more and the supervisor gives up (exit != 0).
        window_s: the window of ``max_restarts``.
        backoff_s: the wait before the first restart; doubled after each, up to ``max_backoff_s``.
        max_backoff_s: the longest wait.
        healthy_after_s: a run at least this long resets the wait to ``backoff_s``.
    """

    max_restarts: int = 10
    window_s: float = 600.0
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    healthy_after_s: float = 60.0


def _how(rc: int) -> str:
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def supervise(start: Callable[[], subprocess.Popen], name: str, policy: RestartPolicy = RestartPolicy(),
              sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> int:
    """Run ``start()`` until its process exits 0 (done: returns 0) or the supervisor is stopped (SIGTERM or
    SIGINT, passed on to the process as SIGTERM: returns its exit status); a process that dies otherwise is
    started again after the policy's backoff. Returns the last exit status when the policy gives up."""
    stopping = False
    current: list[subprocess.Popen] = []

    def stop(signum, _frame):
        nonlocal stopping
        stopping = True
        if current and current[0].poll() is None:
            current[0].terminate()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    restarts: deque[float] = deque()
    backoff = policy.backoff_s
    try:
        while True:
            started = clock()
            proc = start()
            current[:] = [proc]
            log.info("%s started (pid %d)", name, proc.pid, extra={"hft": {"supervised": name, "pid": proc.pid}})
            rc = proc.wait()
            if stopping or rc == 0:
                return rc
            now = clock()
            ran = now - started
            while restarts and now - restarts[0] > policy.window_s:
                restarts.popleft()
            if len(restarts) >= policy.max_restarts:
                log.error("%s %s after %.1f s: %d restarts in %.0f s, giving up", name, _how(rc), ran,
                          len(restarts), policy.window_s)
                return rc
            if ran >= policy.healthy_after_s:
                backoff = policy.backoff_s
            restarts.append(now)
            log.error("%s %s after %.1f s: restart %d in %.0f s, in %.1f s", name, _how(rc), ran, len(restarts),
                      policy.window_s, backoff,
                      extra={"hft": {"supervised": name, "exit": rc, "restarts": len(restarts)}})
            sleep(backoff)
            backoff = min(backoff * 2, policy.max_backoff_s)
            if stopping:
                return rc
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
