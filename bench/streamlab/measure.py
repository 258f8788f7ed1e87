"""Reading the results: predictions from the Redis stream, the job's metrics and Spark's progress reports, one
row per engine and phase."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime

from streamlab.common import SUSTAIN_FRACTION, TARGET_P99_MS, Engine, pct
from streamlab.data import Phase
from streamlab.producer import Sent


class StreamReader:
    """Reads the predictions stream incrementally (entry id, fields)."""

    def __init__(self, r, key: str):
        self.r, self.key, self.last = r, key, "0-0"

    def added(self) -> int:
        """Entries ever added to the stream (XINFO STREAM's entries-added; trimming does not lower it)."""
        import redis

        try:
            return int(self.r.xinfo_stream(self.key)["entries-added"])
        except redis.ResponseError:  # no such key yet
            return 0

    def read(self) -> list[tuple[str, dict]]:
        out = []
        while True:
            batch = self.r.xrange(self.key, min="(" + self.last, count=20000)
            if not batch:
                return out
            self.last = batch[-1][0]
            out.extend(batch)


def collect(reader: StreamReader, expected: set, engine: Engine | None, timeout_s: float, stall_s: float) -> dict:
    """Wait until every expected (ticker, bar ts) has its prediction; returns them with their stream ids.

    While predictions arrive only the stream's entries-added counter is polled; the entries are read once
    that many are there (a phase stays under the stream's ~100,000 kept entries). Reading every entry as it
    arrived cost this process ~0.3 cores at 5,000 bars/s, on the 2 cores it shares with what it measures."""
    got: dict = {}
    deadline = time.monotonic() + timeout_s
    progress = time.monotonic()
    base = seen = reader.added()
    while len(got) < len(expected):
        added = reader.added()
        now = time.monotonic()
        if added != seen:
            seen, progress = added, now
        if added - base >= len(expected) - len(got) or now > deadline or now - progress > stall_s:
            for entry_id, f in reader.read():
                key = (f["ticker"], int(f["bar_ts"]))
                if key in expected:
                    got[key] = (entry_id, f)
            base = added
            if len(got) >= len(expected) or now > deadline or now - progress > stall_s:
                break
        if engine is not None and not engine.alive():
            raise RuntimeError(f"{engine.name} exited ({engine.proc.returncode}):\n{engine.tail()}")
        time.sleep(0.05)
    return got


def scrape(port: int) -> dict[str, float]:
    """hft_stream_* sums and counts from a Prometheus /metrics endpoint."""
    out: dict[str, float] = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return out
    for line in text.splitlines():
        m = re.match(r"^(hft_stream_\w+?(?:_sum|_count|_total))(?:\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(2))
    return out


def spark_progress(text: str) -> list[dict]:
    """Every StreamingQueryProgress JSON Spark logged (INFO 'Streaming query made progress: {...}')."""
    out, dec = [], json.JSONDecoder()
    for m in re.finditer(r"Streaming query made progress: ", text):
        try:
            obj, _ = dec.raw_decode(text, m.end())
        except json.JSONDecodeError:
            continue
        out.append(obj)
    return out


def iso_ns(ts: str) -> int:
    return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1e9)


def worker_stats(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        if line.startswith("BENCHBATCH "):
            out.append(json.loads(line[len("BENCHBATCH "):]))
    return out


@dataclass
class Row:
    engine: str
    phase: str
    offered: float
    bars: int
    sent_rate: float
    producer_behind_ms: float
    achieved: float
    expected: int
    predictions: int
    p50: float
    p99: float
    p999: float
    max: float
    vis_p99: float
    batches: int = 0
    mean_batch: float = 0.0
    proc_us_per_bar: float = float("nan")
    cpu_ms_per_1k: float = float("nan")
    jit_cores: float = float("nan")  # the engine's JIT compiler threads, cores over the phase (0 once warm)
    load1: float = float("nan")  # 1-minute load average at the end of the phase (other work on the machine)
    parts: dict = field(default_factory=dict)  # where the time went, seconds over the phase
    cpu: dict = field(default_factory=dict)  # CPU seconds of each process over the phase
    wall_s: float = 0.0

    @property
    def sustained(self) -> bool:
        return self.achieved >= SUSTAIN_FRACTION * self.offered and self.p99 <= TARGET_P99_MS and \
            self.predictions == self.expected


def phase_row(engine: str, phase: Phase, sent: Sent, got: dict) -> Row:
    import numpy as np

    produced = np.array([int(f["produced_ns"]) for _, f in got.values()], dtype=np.int64)
    written = np.array([int(f["written_ns"]) for _, f in got.values()], dtype=np.int64)
    visible = np.array([int(i.split("-")[0]) for i, _ in got.values()], dtype=np.int64)
    lat = (written - produced) / 1e6
    vis = visible - produced / 1e6
    last = int(written.max()) if len(written) else sent.last_ns
    wall = (last - sent.first_ns) / 1e9
    return Row(engine, phase.label, phase.rate, len(phase.msgs), sent.rate, sent.max_behind_ms,
               len(phase.msgs) / max(wall, 1e-9), len(phase.expected), len(got),
               pct(lat, 50), pct(lat, 99), pct(lat, 99.9), float(lat.max()) if len(lat) else float("nan"),
               pct(vis, 99), wall_s=wall)
