"""The supervisor restarts real processes that die, backs off, gives up, and passes a stop on."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

from hft.supervisor import RestartPolicy, supervise


def _script(tmp_path, body: str):
    """A process that counts its starts in a file, then runs ``body`` (Python) with ``n`` its start number."""
    counter = tmp_path / "starts"

    def start():
        code = (f"import os, sys, time; p = {str(counter)!r}; n = int(open(p).read()) + 1 if os.path.exists(p) "
                f"else 1; open(p, 'w').write(str(n)); {body}")
        return subprocess.Popen([sys.executable, "-c", code])

    return start, counter


def test_a_process_that_dies_is_restarted_until_it_finishes(tmp_path):
    start, counter = _script(tmp_path, "os.kill(os.getpid(), 9) if n < 3 else sys.exit(0)")
    waits: list[float] = []
    assert supervise(start, "t", RestartPolicy(backoff_s=0.5, max_backoff_s=1.5), sleep=waits.append) == 0
    assert counter.read_text() == "3" and waits == [0.5, 1.0]  # two deaths (SIGKILL), each waited, doubled


def test_it_gives_up_on_a_process_that_keeps_dying(tmp_path):
    start, counter = _script(tmp_path, "sys.exit(3)")
    rc = supervise(start, "t", RestartPolicy(max_restarts=4, backoff_s=0.01, window_s=60), sleep=lambda s: None)
    assert rc == 3 and counter.read_text() == "5"  # the first run and 4 restarts


def test_a_stop_reaches_the_process_and_ends_the_supervisor(tmp_path):
    start, counter = _script(tmp_path, "time.sleep(60)")
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    rc = supervise(start, "t", RestartPolicy(backoff_s=0.01))
    assert rc == -signal.SIGTERM and time.monotonic() - t0 < 10 and counter.read_text() == "1"
    assert signal.getsignal(signal.SIGTERM) == before  # the supervisor's handler is gone
