"""Tick-to-order benchmark: a bar produced to Kafka -> the order the executor sends for it, with the transport
floor measured in the same run and the time of every stage in between.

Run from the repository root (``make bench-e2e`` runs the defaults; about 4 minutes on 2 cores, ``--quick``
about 1, plus about a minute once to train the model)::

    .venv/bin/python bench/e2e.py [--rates 1000,5000] [--seconds 20] [--engine python|spark] [--quick]
                                  [--traded 2|all] [--linger-ms N] [--py-loop drain|window] [--json PATH]

Set-up (everything under ``var/bench-e2e``, git-ignored; reuses bench/streamlab): a Kafka broker and Redis of
its own (:mod:`hft.stack`, free loopback ports, stopped at the end, on error and Ctrl-C too), ``market.bars``
with ``--partitions`` (4) partitions, a tiny ``champion`` in a sqlite MLflow store (trained once, then
reused), synthetic 1m bars of ``--tickers`` (20) tickers produced paced at each offered rate by this process
with the project's producer settings (``linger.ms`` 20 unless ``--linger-ms``), ``produced_ns`` stamped at
send time. Long-lived processes, started once, each in its own session and stopped at the end:

* the floor's two no-work loops (this file, ``--_worker floor`` / ``relay``): a confluent-kafka consumer of
  ``bench.floor`` that XADDs each bar's ``produced_ns`` to the Redis stream ``bench:floor`` (one MULTI/EXEC
  per batch), and a Redis consumer-group reader of that stream that XADDs each entry again to
  ``bench:floor:relayed`` and XACKs, the way the executor reads predictions;
* the streaming engine: ``python`` (default) = bench/streamlab's consumer loop around the job's own
  ``BatchProcessor`` (same decoding, features, champion model, Redis commit, DLQ and ``predictions`` sinks
  as ``hft stream``), with the floor's consumer settings and loop; ``spark`` = ``hft stream`` itself
  (spark-submit ``local[2]``, ``--trigger``, 100 ms);
* ``hft execute``: the executor service (C++ decisions, paper exchange, journal fsync, Kafka ``orders``
  acks=all, Redis ``orders`` stream) on the wall clock, reading every prediction; its universe is the first
  ``--traded`` (2) of the tickers, and it sends an order on every prediction of those (thresholds all 0.5
  so the signal is always long or short, ``rebalance_fraction`` 0 so every change of the volatility-scaled
  target is an order, risk limits and the order rate limit out of the way; the stale guard at 1e9 s, since
  the synthetic bars are dated 2024): :data:`EXEC_ENV`, overridable with ``--exec-env``. Predictions of
  the other tickers are refused as unknown instruments (decided and journaled, nothing published): about
  10% of the bars become orders (each published as ``order_sent``, ``fill``, ``order_done``), and which ones
  does not depend on where a bar falls in a batch (a rate limit would pass the oldest bars of each batch).
  ``--traded all``: an order on nearly every bar, the executor's worst case.

The default engine is ``python`` because it starts in seconds and needs no JIT warm-up (Spark's JVM takes
minutes of mixed rates to compile its per-batch paths, bench/streaming), and because it runs the same
processor code, so the features / model / commit stages are the product's; the difference is the consumer:
a drain loop (take what Kafka has queued, else block for the next message) with the Spark job's fetch
settings (``fetch.min.bytes`` 1, ``fetch.wait.max.ms`` 10) instead of Spark's micro-batch trigger.
``--engine spark`` measures the product job (its 100 ms trigger is by itself twice the 50 ms budget).

Per offered rate (lowest first), after an unpaced warm-up session and ``--warm-seconds`` of paced bars of
other tickers (``W000``..., not reported; for Spark, JIT warm-up rounds as in bench/streaming):

* phase A, transport floor: the phase's bars to ``bench.floor``; latency = when the bar's entry became
  readable in ``bench:floor`` (its stream id: Redis' clock at EXEC, ms, +0.5 ms) - ``produced_ns``; and the
  same for ``bench:floor:relayed`` (the floor of the executor's hop too);
* phase B, the full path: the same bars (same tickers and times) to ``market.bars``; the phase ends when
  every expected prediction is in Redis and the executor's consumer group has acknowledged all of them.
  Latency per order = when the ``order_sent`` record became readable in the Redis ``orders`` stream (its
  id; the service publishes after the journal fsync and the Kafka ``orders`` acknowledgement, which is what
  the service itself calls *sent*) - ``produced_ns`` of the bar that caused it (the journal's
  ``order_sent`` event names its instrument and bar; ``order_id`` links it to the record).

Stages (``hft.observability.metrics.PATH_STAGES``): exact per bar where a stamp exists: ``consumed`` and
``features`` (the processor's ``stage_ns`` of the bar's batch, printed by the python engine),
``predicted`` (the prediction's ``predicted_ns``), ``committed`` (the batch's commit returned; Spark: the
prediction's stream id), ``received`` (the executor's clock for the batch, from the journal's
``prediction_seen`` / ``order_sent`` events), ``sent`` (as above); the others (``decided``, ``filled``,
and Spark's ``consumed``/``features``) from the ``hft_path_latency_seconds`` histograms scraped from the
engine's and the executor's ``/metrics`` before and after the phase (quantiles interpolated in buckets, '~').
Where the time goes: per order, the step from each exact stamp to the next; the table shows each step's
p50/p99, its share of the mean tick-to-order time, and its mean among the slowest 1% of orders (what the
p99 is made of). Also CPU (cores) of every process during each phase, engine and executor batches, and,
after the phases, probes of what an executor batch waits for before it counts as sent (journal append +
fsync, Kafka acks=all send, the Redis MULTI/EXEC), each alone on the idle machine.

The table: rate, phase, count, p50/p99/p99.9/max (ms), achieved rate, p99 / floor p99 (the Kafka -> Redis
floor of the same rate, measured minutes apart in the same run), and the verdict against the target:
order-sent p99 <= 50 ms at 5,000 bars/s. The machine is shared (2 cores, other jobs): figures are noisy,
the ratios against the same run's floor less so; the load average is printed with every phase.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

from streamlab.common import ROOT, VENV_BIN, Engine, free_ports, load_avg, pct, pid_ticks, say
from streamlab.data import Phase, make_data
from streamlab.engines import Ctx, ensure_champion, next_batch, python_worker, reset, warm_broker
from streamlab.measure import StreamReader, worker_stats
from streamlab.producer import produce

HOME = ROOT / "var" / "bench-e2e"
ENTRY = Path(__file__).resolve()
FLOOR_TOPIC = "bench.floor"
FLOOR_KEY, RELAY_KEY, RELAY_GROUP = "bench:floor", "bench:floor:relayed", "relay"
TARGET_RATE, TARGET_P99_MS = 5000, 50.0
MAX_PHASE_BARS = 80_000  # the predictions stream keeps ~100,000 entries; a phase is read once it is complete
STAGES = ("produced", "consumed", "features", "predicted", "committed", "received", "decided", "sent", "filled")

#: The executor's settings for the run (``HFT_EXEC_<NAME>``, hft.execution.config): trade on nearly every
#: prediction, and let no risk rule refuse it (the point is the path's latency, not the strategy).
EXEC_ENV = {
    "HFT_EXEC_ENTER_LONG": "0.5", "HFT_EXEC_EXIT_LONG": "0.5", "HFT_EXEC_ENTER_SHORT": "0.5",
    "HFT_EXEC_EXIT_SHORT": "0.5",  # always long or short: p >= 0.5 long, else short
    "HFT_EXEC_REBALANCE_FRACTION": "0",  # every change of the target (it moves with the volatility) trades
    "HFT_EXEC_RISK_PER_TRADE": "1000", "HFT_EXEC_MAX_POSITION": "100000000",
    "HFT_EXEC_MAX_GROSS_NOTIONAL": "1e12", "HFT_EXEC_MAX_ORDER_NOTIONAL": "1e12",
    "HFT_EXEC_ORDERS_PER_SECOND": "1e7", "HFT_EXEC_ORDER_BURST": "1e7",
    "HFT_EXEC_MAX_PREDICTION_AGE_S": "1e9",  # bars dated 2024 on the wall clock
    "HFT_EXEC_DAILY_LOSS_LIMIT": "1e12", "HFT_EXEC_MAX_OPEN_ORDERS": "64",
}


# -- the floor's no-work loops (subprocesses of this file) ------------------------------------------------------
def _stop_flag() -> list:
    stop: list = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    return stop


def consumer_conf(args, group: str) -> dict:
    from hft.kafka_conn import client_config

    return client_config(args._bootstrap, {"group.id": group, "auto.offset.reset": "earliest",
                                           "enable.auto.commit": False, "fetch.wait.max.ms": args.fetch_wait_ms,
                                           "fetch.min.bytes": args.fetch_min_bytes})


def floor_worker(args) -> int:
    """Kafka ``bench.floor`` -> Redis ``bench:floor``: each bar's produced_ns, nothing else (no decoding)."""
    from confluent_kafka import Consumer

    from hft.redis_conn import connect

    stop = _stop_flag()
    r = connect(args._redis, decode_responses=False)
    consumer = Consumer(consumer_conf(args, args._group))
    consumer.subscribe([FLOOR_TOPIC])
    mark = b'"produced_ns":'
    try:
        while not stop:
            msgs = next_batch(consumer, args.py_max_batch, args.py_timeout_ms / 1000, args.py_loop == "drain")
            if not msgs:
                continue
            pipe = r.pipeline(transaction=True)
            for m in msgs:
                if m.error() is None:
                    v = m.value()
                    pipe.xadd(FLOOR_KEY, {"p": v[v.rfind(mark) + len(mark):-1]}, maxlen=1_000_000, approximate=True)
            pipe.execute()
            consumer.commit(asynchronous=True)
    finally:
        consumer.close()
    return 0


def relay_worker(args) -> int:
    """Redis ``bench:floor`` (consumer group, as the executor reads predictions) -> ``bench:floor:relayed``."""
    import redis

    from hft.redis_conn import connect

    stop = _stop_flag()
    r = connect(args._redis, decode_responses=False)
    try:
        r.xgroup_create(FLOOR_KEY, RELAY_GROUP, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    while not stop:
        reply = r.xreadgroup(RELAY_GROUP, "relay-1", {FLOOR_KEY: ">"}, count=1000, block=200)
        entries = reply[0][1] if reply else []
        if not entries:
            continue
        pipe = r.pipeline(transaction=True)
        for _, f in entries:
            pipe.xadd(RELAY_KEY, {"p": f[b"p"]}, maxlen=1_000_000, approximate=True)
        pipe.execute()
        r.xack(FLOOR_KEY, RELAY_GROUP, *[i for i, _ in entries])
    return 0


# -- starting the processes ----------------------------------------------------------------------------------
def _worker_cmd(ctx: Ctx, kind: str, group: str, extra: list[str] | None = None) -> list[str]:
    a = ctx.args
    return [sys.executable, str(ENTRY), "--_worker", kind, "--_bootstrap", ctx.config.kafka_bootstrap,
            "--_redis", ctx.config.redis_url, "--_tickers", ",".join(ctx.tickers), "--_group", group,
            "--py-loop", a.py_loop, "--py-timeout-ms", str(a.py_timeout_ms), "--py-max-batch", str(a.py_max_batch),
            "--fetch-wait-ms", str(a.fetch_wait_ms), "--fetch-min-bytes", str(a.fetch_min_bytes), *(extra or [])]


def start_engine(ctx: Ctx, metrics_port: int) -> Engine:
    a = ctx.args
    if a.engine == "python":
        cmd = _worker_cmd(ctx, "python", f"bench-e2e-python-{time.time_ns()}", ["--_metrics_port", str(metrics_port)])
        return Engine("python", cmd, HOME / "logs" / "python.log", {**ctx.env, "OPENBLAS_NUM_THREADS": "1"})
    checkpoint = ctx.config.run_dir / "checkpoints" / f"bench-e2e-{time.time_ns()}"
    cmd = [str(VENV_BIN / "hft"), "stream", "--master", a.master, "--tickers", ",".join(ctx.tickers),
           "--trigger", a.trigger, "--checkpoint", str(checkpoint), "--metrics-port", str(metrics_port)]
    return Engine(f"spark {a.trigger}", cmd, HOME / "logs" / "spark.log", ctx.env)


def exec_env(args) -> dict:
    env = dict(EXEC_ENV)
    for item in (x.strip() for x in (args.exec_env or "").split(",")):
        if item:
            k, v = item.split("=", 1)
            env[k if k.startswith("HFT_EXEC_") else "HFT_EXEC_" + k.upper()] = v
    return env


def traded(ctx: Ctx) -> list[str]:
    """The executor's universe: the first --traded of the measured tickers and as many warm-up ones. A ticker
    is in or out for the whole run, so which bars become orders does not depend on where they fall in an
    executor batch (an order rate limit would pass the first, i.e. oldest, bars of each batch: biased)."""
    if ctx.args.traded == "all":
        return list(ctx.tickers)
    k = int(ctx.args.traded)
    return [t for t in ctx.tickers if int(t[1:]) < k]


def start_executor(ctx: Ctx, metrics_port: int, journal: Path) -> Engine:
    cmd = [str(VENV_BIN / "hft"), "execute", "--tickers", ",".join(traded(ctx)), "--journal", str(journal),
           "--redis", ctx.config.redis_url, "--metrics-port", str(metrics_port)]
    return Engine("executor", cmd, HOME / "logs" / "executor.log", {**ctx.env, **exec_env(ctx.args)})


# -- measuring -----------------------------------------------------------------------------------------------
def scrape_path(port: int) -> dict[str, dict[float, float]]:
    """``hft_path_latency_seconds`` cumulative bucket counts per stage from a /metrics endpoint ({} if none)."""
    out: dict[str, dict[float, float]] = {}
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return out
    for m in re.finditer(r"^hft_path_latency_seconds_bucket\{([^}]*)\} ([0-9.eE+-]+)$", text, re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out.setdefault(labels["stage"], {})[float(labels["le"])] = float(m.group(2))
    return out


def hist_delta(after: dict, before: dict) -> dict[str, dict[float, float]]:
    return {st: {le: n - before.get(st, {}).get(le, 0.0) for le, n in b.items()} for st, b in after.items()}


def hist_quantile(buckets: dict[float, float], q: float) -> tuple[float, int]:
    """(quantile in ms, count) from cumulative buckets, interpolated linearly inside the bucket (Prometheus'
    histogram_quantile); beyond the last finite bound: that bound. nan when empty."""
    items = sorted(buckets.items())
    total = items[-1][1] if items else 0.0
    if total <= 0:
        return float("nan"), 0
    rank, lo, below = q * total, 0.0, 0.0
    for le, cum in items:
        if cum >= rank:
            if le == float("inf"):
                return lo * 1000, int(total)
            return (lo + (le - lo) * ((rank - below) / max(cum - below, 1e-12))) * 1000, int(total)
        lo, below = le, cum
    return lo * 1000, int(total)


def entry_ns(entry_id: str) -> int:
    """When a stream entry became readable: its id's ms (Redis' clock at EXEC), +0.5 ms (unbiased)."""
    return int(entry_id.split("-", 1)[0]) * 1_000_000 + 500_000


def wait_added(readers: list[StreamReader], bases: list[int], n: int, procs: list[Engine], stall_s: float,
               timeout_s: float) -> None:
    """Until each reader's stream got ``n`` entries past its base (or nothing new for ``stall_s``)."""
    deadline, progress, seen = time.monotonic() + timeout_s, time.monotonic(), None
    while True:
        added = [r.added() - b for r, b in zip(readers, bases)]
        now = time.monotonic()
        if added != seen:
            seen, progress = added, now
        if min(added) >= n or now > deadline or now - progress > stall_s:
            return
        for p in procs:
            if not p.alive():
                raise RuntimeError(f"{p.name} exited ({p.proc.returncode}):\n{p.tail()}")
        time.sleep(0.05)


def collect_after(reader: StreamReader, expected: set, base: int, procs: list[Engine], timeout_s: float,
                  stall_s: float) -> dict:
    """The predictions of ``expected`` ({(ticker, bar ts): (entry id, fields)}), once the stream has
    ``len(expected)`` entries past ``base`` (its entries-added counter taken before the bars were produced) or
    nothing new came for ``stall_s``; only that counter is polled meanwhile."""
    wait_added([reader], [base], len(expected), procs, stall_s, timeout_s)
    got = {}
    for entry_id, f in reader.read():
        key = (f["ticker"], int(f["bar_ts"]))
        if key in expected:
            got[key] = (entry_id, f)
    return got


def warm_up(ctx: Ctx, procs: dict[str, Engine], cpu: "Cpu") -> None:
    """Paced rounds of the warm-up tickers' bars at each rate, through the floor and the full path, not
    reported: one round for the python engine; for Spark, rounds until its JIT compiler threads used under
    0.05 cores over one (at least 2, at most ``--jit-rounds``), as bench/streaming does."""
    from hft.schemas import RedisKeys
    from hft.streaming.messages import BARS_TOPIC

    engine, tck = procs["engine"], os.sysconf("SC_CLK_TCK")
    reader = StreamReader(ctx.redis, RedisKeys().predictions)
    reader.read()
    for n, round_ in enumerate(ctx.jit, 1):
        t0, jit0, p99 = time.monotonic(), engine.jit_ticks(), []
        for ph in round_:
            run_floor(ctx, ph, procs, RateResult(ph.rate), cpu, reporting=False)
            base = reader.added()
            sent = produce(ctx.config.kafka_bootstrap, ph.msgs, ph.rate, BARS_TOPIC)
            got = collect_after(reader, ph.expected, base, [engine], 300, ctx.args.stall_s)
            lat = [(int(f["written_ns"]) - int(f["produced_ns"])) / 1e6 for _, f in got.values()]
            p99.append(f"{ph.rate:,.0f}/s predictions p99 {pct(lat, 99):,.0f} ms ({len(got)}/{len(ph.expected)}, "
                       f"producer {sent.max_behind_ms:,.0f} ms behind)")
            wait_executor(ctx.redis, RedisKeys().predictions, procs["executor"], 120)
        jit = (engine.jit_ticks() - jit0) / tck / (time.monotonic() - t0)
        say(f"   warm-up round {n}: {', '.join(p99)}; JIT compiler threads {jit:.2f} cores (not reported)")
        if ctx.args.engine != "spark" or (n >= 2 and jit < 0.05):
            return
    say(f"   !! the JIT was still compiling after {len(ctx.jit)} rounds: the phases include its work")


def wait_executor(r, stream: str, executor: Engine, timeout_s: float) -> bool:
    """Until the executor's group has been delivered every entry of ``stream`` and acknowledged them all."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last = r.xinfo_stream(stream)["last-generated-id"]
        g = next((g for g in r.xinfo_groups(stream) if g["name"] == "executor"), None)
        if g is not None and g["last-delivered-id"] == last and int(g["pending"]) == 0:
            return True
        if not executor.alive():
            raise RuntimeError(f"executor exited ({executor.proc.returncode}):\n{executor.tail()}")
        time.sleep(0.05)
    return False


class JournalTail:
    """The executor's journal (events.bin, fixed EVENT_DTYPE records) read from the outside, from a record on."""

    def __init__(self, folder: Path):
        import hft_exec

        self.x, self.folder = hft_exec, folder
        self.pos = 0

    def records(self) -> int:
        try:
            return (self.folder / "events.bin").stat().st_size // self.x.EVENT_DTYPE.itemsize
        except OSError:
            return 0

    def read(self):
        import numpy as np

        n = self.records()
        size = self.x.EVENT_DTYPE.itemsize
        with open(self.folder / "events.bin", "rb") as f:
            f.seek(self.pos * size)
            data = f.read((n - self.pos) * size)
        self.pos = n
        return np.frombuffer(data, dtype=self.x.EVENT_DTYPE)

    def tickers(self) -> list[str]:
        return json.loads((self.folder / "instruments.json").read_text())["tickers"]


@dataclass
class Lat:
    rate: float
    phase: str
    count: int
    expected: int
    p50: float
    p99: float
    p999: float
    max: float
    achieved: float = float("nan")
    load1: float = float("nan")


def lat_row(rate: float, phase: str, lat_ms, expected: int, achieved: float = float("nan")) -> Lat:
    return Lat(rate, phase, len(lat_ms), expected, pct(lat_ms, 50), pct(lat_ms, 99), pct(lat_ms, 99.9),
               float(max(lat_ms)) if len(lat_ms) else float("nan"), achieved, os.getloadavg()[0])


@dataclass
class RateResult:
    rate: float
    rows: list[Lat] = field(default_factory=list)
    steps: list[dict] = field(default_factory=list)  # where the time goes, per step (orders)
    hist: dict = field(default_factory=dict)  # stage -> (p50, p99, n) from the histograms
    exact: dict = field(default_factory=dict)  # stage -> (p50, p99, n) exact, over the bars that became orders
    cpu_a: dict = field(default_factory=dict)
    cpu_b: dict = field(default_factory=dict)
    cpu_us_per_bar: dict = field(default_factory=dict)  # phase B: CPU microseconds per bar of each process
    notes: list[str] = field(default_factory=list)


class Cpu:
    """CPU seconds of the benchmark's processes and the stack's, between two calls of ``take``."""

    def __init__(self, procs: dict[str, Engine], pids: dict[str, int]):
        self.procs, self.pids = procs, pids

    def take(self) -> dict[str, float]:
        tck = os.sysconf("SC_CLK_TCK")
        out = {k: p.cpu_ticks() / tck for k, p in self.procs.items()}
        out.update({k: pid_ticks(v) / tck for k, v in self.pids.items()})
        t = os.times()
        out["bench (producer)"] = t.user + t.system
        return out

    @staticmethod
    def cores(a: dict, b: dict, wall_s: float) -> dict[str, float]:
        return {k: (b[k] - a.get(k, 0.0)) / max(wall_s, 1e-9) for k in b}


def run_floor(ctx: Ctx, phase: Phase, procs: dict[str, Engine], res: RateResult, cpu: Cpu, reporting: bool = True) -> None:
    import numpy as np

    args = ctx.args
    readers = [StreamReader(ctx.redis, FLOOR_KEY), StreamReader(ctx.redis, RELAY_KEY)]
    for r in readers:
        r.read()  # to the end: only this phase's entries are read below
    bases = [r.added() for r in readers]
    c0, t0 = cpu.take(), time.monotonic()
    sent = produce(ctx.config.kafka_bootstrap, phase.msgs, phase.rate, FLOOR_TOPIC)
    wait_added(readers, bases, len(phase.msgs), [procs["floor"], procs["relay"]], args.stall_s,
               max(120.0, 10 * len(phase.msgs) / max(phase.rate, 1)))
    wall = time.monotonic() - t0
    c1 = cpu.take()
    if not reporting:
        for r in readers:
            r.read()
        return
    for name, r in zip(("A floor: kafka->redis", "A floor: +redis hop"), readers):
        entries = r.read()
        produced = np.array([int(f["p"]) for _, f in entries], dtype=np.int64)
        seen = np.array([entry_ns(i) for i, _ in entries], dtype=np.int64)
        lat = (seen - produced) / 1e6
        achieved = len(entries) / max((seen.max() - sent.first_ns) / 1e9, 1e-9) if len(entries) else 0.0
        res.rows.append(lat_row(phase.rate, name, lat, len(phase.msgs), achieved))
    res.cpu_a = Cpu.cores(c0, c1, wall)
    if sent.max_behind_ms > 100:
        res.notes.append(f"floor: the producer fell {sent.max_behind_ms:,.0f} ms behind its schedule")


def run_full(ctx: Ctx, phase: Phase, procs: dict[str, Engine], journal: JournalTail, res: RateResult, cpu: Cpu,
             ports: dict[str, int]) -> None:
    import numpy as np

    from hft.schemas import RedisKeys, bar_end_ns
    from hft.streaming.messages import BARS_TOPIC

    args, x = ctx.args, journal.x
    keys = RedisKeys()
    engine, executor = procs["engine"], procs["executor"]
    preds = StreamReader(ctx.redis, keys.predictions)
    orders = StreamReader(ctx.redis, keys.orders)
    preds.read()
    orders.read()
    journal.read()  # skip to the end
    log_pos = len(engine.log_text())
    h0 = {k: scrape_path(p) for k, p in ports.items()}
    base = preds.added()
    c0, t0 = cpu.take(), time.monotonic()
    sent = produce(ctx.config.kafka_bootstrap, phase.msgs, phase.rate, BARS_TOPIC)
    got = collect_after(preds, phase.expected, base, [engine, executor],
                        max(120.0, 10 * len(phase.msgs) / max(phase.rate, 1)), args.stall_s)
    drained = wait_executor(ctx.redis, keys.predictions, executor, timeout_s=max(60.0, args.stall_s))
    wall = time.monotonic() - t0
    c1 = cpu.take()
    time.sleep(0.3)  # the last batch's metrics
    h1 = {k: scrape_path(p) for k, p in ports.items()}
    res.cpu_b = Cpu.cores(c0, c1, wall)
    res.cpu_us_per_bar = {k: (c1[k] - c0.get(k, 0.0)) / len(phase.msgs) * 1e6 for k in ("engine", "executor")}
    if not drained:
        res.notes.append("the executor had not acknowledged every prediction when the phase ended")
    if len(got) < len(phase.expected):
        res.notes.append(f"{len(phase.expected) - len(got)} predictions missing")
    if sent.max_behind_ms > 100:
        res.notes.append(f"full path: the producer fell {sent.max_behind_ms:,.0f} ms behind its schedule")

    # per bar (ticker, bar ts ms): its stamps, ns
    stamps: dict[tuple[str, int], dict[str, int]] = {}
    by_end: dict[tuple[str, int], tuple[str, int]] = {}
    batches = {}
    for s in worker_stats(engine.log_text()[log_pos:]):
        st = s.get("stages") or {}
        if "predicted" in st:
            batches[int(st["predicted"])] = st
    for key, (entry_id, f) in got.items():
        d = {"produced": int(f["produced_ns"]), "predicted": int(f["predicted_ns"])}
        st = batches.get(d["predicted"])
        if st:
            d.update(consumed=int(st["consumed"]), features=int(st["features"]), committed=int(st["committed"]))
        else:
            d["committed"] = entry_ns(entry_id)
        stamps[key] = d
        by_end[(key[0], int(bar_end_ns(key[1] * 1_000_000, "1m")))] = key
    committed = np.array([d["committed"] for d in stamps.values()], dtype=np.int64)
    pred_lat = (committed - np.array([d["produced"] for d in stamps.values()], dtype=np.int64)) / 1e6
    achieved = len(phase.msgs) / max((committed.max() - sent.first_ns) / 1e9, 1e-9) if len(committed) else 0.0
    res.rows.append(lat_row(phase.rate, "B predictions committed", pred_lat, len(phase.expected), achieved))

    events = journal.read()
    tickers = journal.tickers()
    seen = events[events["type"] == x.EventType.prediction_seen]
    known = seen[seen["instrument"] < len(tickers)]  # the others: outside the executor's universe (--traded)
    for e in known:
        key = by_end.get((tickers[int(e["instrument"])], int(e["bar_ts_ns"])))
        if key is not None:
            stamps[key]["received"] = int(e["ts_ns"])
    exec_batches = len(np.unique(seen["ts_ns"]))
    order_bar = {}
    for e in events[events["type"] == x.EventType.order_sent]:
        key = by_end.get((tickers[int(e["instrument"])], int(e["bar_ts_ns"])))
        if key is not None:
            order_bar[int(e["order_id"])] = key
    rows = []
    published = orders.read()
    for entry_id, f in published:
        if f.get("type") == "order_sent" and int(f["order_id"]) in order_bar:
            d = dict(stamps[order_bar[int(f["order_id"])]])
            d["sent"] = entry_ns(entry_id)
            rows.append(d)
    order_lat = np.array([(d["sent"] - d["produced"]) / 1e6 for d in rows])
    end = max((d["sent"] for d in rows), default=sent.first_ns)
    res.rows.append(lat_row(phase.rate, "B order sent", order_lat, len(phase.expected),
                            len(phase.msgs) / max((end - sent.first_ns) / 1e9, 1e-9)))
    eng_batches = [s for s in worker_stats(engine.log_text()[log_pos:]) if s["n"] > 0]
    res.notes.append(f"{len(rows)} orders from {len(got)} predictions of {len(phase.msgs)} bars; engine "
                     f"{len(eng_batches) or 'n/a'} batches"
                     + (f" of {sum(s['n'] for s in eng_batches) / len(eng_batches):,.0f} bars" if eng_batches else "")
                     + f", executor {exec_batches} batches of {len(seen) / max(exec_batches, 1):,.0f} predictions "
                     f"and {len(published) / max(exec_batches, 1):,.1f} published records (orders, fills, done)")

    # exact stages over the bars that became orders, and the steps between consecutive stamps
    order_stages = [s for s in STAGES if rows and all(s in d for d in rows)]
    for s in order_stages[1:]:
        v = np.array([(d[s] - d["produced"]) / 1e6 for d in rows])
        res.exact[s] = (pct(v, 50), pct(v, 99), len(v))
    if rows:
        total = order_lat
        tail = total >= pct(total, 99)
        mean_total = float(total.mean())
        for a, b in zip(order_stages, order_stages[1:]):
            step = np.array([(d[b] - d[a]) / 1e6 for d in rows])
            res.steps.append({"step": f"{a} -> {b}", "p50": pct(step, 50), "p99": pct(step, 99),
                              "mean": float(step.mean()), "share": float(step.mean()) / mean_total,
                              "tail_mean": float(step[tail].mean())})
    merged: dict[str, dict[float, float]] = {}
    for k in ports:
        for st, b in hist_delta(h1[k], h0[k]).items():
            merged[st] = b
    for st, b in merged.items():
        p50, n = hist_quantile(b, 0.5)
        res.hist[st] = (p50, hist_quantile(b, 0.99)[0], n)


def probe_publication(ctx: Ctx, n: int) -> dict[str, tuple[float, float]]:
    """What one executor batch's publication costs on this machine, measured alone (the pipeline idle), as
    the service does it (hft.execution.service.ExecutionService.step): p50 / p99 ms over ``n`` tries of a
    journal append + fsync (20 records), a Kafka acks=all send of 3 records waited for (TopicSink.send, the
    ``orders`` sink), and one Redis MULTI/EXEC with 3 XADDs of an order record, the positions and state
    hashes and the cursor."""
    from hft.stack import TopicSpec, ensure_topics
    from hft.streaming.kafka_io import TopicSink

    ensure_topics(ctx.config.kafka_bootstrap, {"bench.probe": TopicSpec(partitions=1, retention_ms=3_600_000)})
    sink = TopicSink(ctx.config.kafka_bootstrap, "bench.probe", "bench-probe")
    sink.send([(b"k", b"warm")])
    path = HOME / "probe-journal.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = {"seq": 1, "type": "order_sent", "ticker": "T000", "order_id": 1, "qty": 10, "price": 100.0,
              "fee": 0.0, "ts_ns": time.time_ns(), "reason": "none"}
    positions = {t: 0 for t in ctx.tickers}
    state = {"cash": 0.0, "equity": 0.0, "day_pnl": 0.0, "fees": 0.0, "halted": 0, "halt_reason": "", "journal_records": 0}
    out: dict[str, list[float]] = {"journal append + fsync": [], "kafka send, acks=all, waited": [],
                                   "redis MULTI/EXEC (3 XADD + 2 HSET + SET)": []}
    try:
        for _ in range(n):
            t0 = time.perf_counter_ns()
            os.write(fd, b"\0" * 56 * 20)
            os.fsync(fd)
            t1 = time.perf_counter_ns()
            sink.send([(b"T000", json.dumps(record).encode())] * 3)
            t2 = time.perf_counter_ns()
            pipe = ctx.redis.pipeline(transaction=True)
            for _ in range(3):
                pipe.xadd("bench:probe", {k: str(v) for k, v in record.items()}, maxlen=10_000, approximate=True)
            pipe.hset("bench:probe:positions", mapping=positions)
            pipe.hset("bench:probe:state", mapping=state)
            pipe.set("bench:probe:cursor", 1)
            pipe.execute()
            t3 = time.perf_counter_ns()
            for k, v in zip(out, (t1 - t0, t2 - t1, t3 - t2)):
                out[k].append(v / 1e6)
            time.sleep(0.005)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return {k: (pct(v, 50), pct(v, 99)) for k, v in out.items()}


# -- the report ----------------------------------------------------------------------------------------------
def fmt(v: float) -> str:
    return "-" if v != v else f"{v:,.1f}"


def print_report(results: list[RateResult], args, probes: dict | None = None) -> None:
    head = (f"{'rate/s':>7} {'phase':<26} {'count':>13} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} "
            f"{'achieved/s':>10} {'load':>5} {'p99 / floor':>11}")
    say(head)
    say("-" * len(head))
    for res in results:
        floor = next((r for r in res.rows if r.phase.startswith("A floor: kafka")), None)
        for r in res.rows:
            ratio = f"{r.p99 / floor.p99:.2f}x" if floor and floor.p99 > 0 and r is not floor else "-"
            say(f"{r.rate:>7,.0f} {r.phase:<26} {f'{r.count}/{r.expected}':>13} {fmt(r.p50):>8} {fmt(r.p99):>8} "
                f"{fmt(r.p999):>9} {fmt(r.max):>8} {r.achieved:>10,.0f} {r.load1:>5.1f} {ratio:>11}")
    busy = [r for res in results for r in res.rows if r.load1 > (os.cpu_count() or 1)]
    if busy:
        say(f"!! the 1-minute load average passed the {os.cpu_count()} cores in {len(busy)} of these rows (up to "
            f"{max(r.load1 for r in busy):.1f}): other work was taking CPU from the path, and the tails show it")
    for res in results:
        say(f"\nStages at {res.rate:,.0f} bars/s: ms from the bar's production (exact: over the bars that became "
            "orders; ~: the processes' hft_path_latency_seconds histograms, every bar)")
        say(f"  {'stage':<10} {'exact p50':>9} {'exact p99':>9} {'~hist p50':>9} {'~hist p99':>9} {'hist n':>7}")
        for s in STAGES[1:]:
            e = res.exact.get(s, (float("nan"),) * 2 + (0,))
            h = res.hist.get(s, (float("nan"),) * 2 + (0,))
            say(f"  {s:<10} {fmt(e[0]):>9} {fmt(e[1]):>9} {fmt(h[0]):>9} {fmt(h[1]):>9} {h[2]:>7}")
        say(f"  where the time goes (per order, step between stamps): {'p50':>6} {'p99':>7} {'mean':>6} "
            f"{'share':>6} {'mean in slowest 1%':>18}")
        for st in res.steps:
            say(f"    {st['step']:<50} {fmt(st['p50']):>6} {fmt(st['p99']):>7} {fmt(st['mean']):>6} "
                f"{st['share']:>6.0%} {fmt(st['tail_mean']):>18}")
        for label, cpu in (("A", res.cpu_a), ("B", res.cpu_b)):
            if cpu:
                say(f"  CPU in phase {label} (cores of {os.cpu_count()}): "
                    + ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005)
                    + f"; total {sum(cpu.values()):.2f}")
        if res.cpu_us_per_bar:
            say("  CPU per bar in phase B (the figure to trust when other work shares the machine): "
                + ", ".join(f"{k} {v:,.0f} us" for k, v in res.cpu_us_per_bar.items()))
        for note in res.notes:
            say(f"  note: {note}")
    if probes:
        say("\nThe executor's publication, probed alone after the phases (what each batch waits for before 'sent'), ms:")
        for k, (p50, p99) in probes.items():
            say(f"  {k:<42} p50 {p50:6.2f}  p99 {p99:6.2f}")
    say(f"\nTarget: tick-to-order (order sent) p99 <= {TARGET_P99_MS:.0f} ms at {TARGET_RATE:,} bars/s "
        f"(engine {args.engine}):")
    for res in results:
        order = next((r for r in res.rows if r.phase == "B order sent"), None)
        floor = next((r for r in res.rows if r.phase.startswith("A floor: kafka")), None)
        if order is None:
            continue
        verdict = "MET" if order.p99 <= TARGET_P99_MS and order.count else "NOT met"
        say(f"  {res.rate:>7,.0f}/s: order sent p99 {fmt(order.p99)} ms ({verdict if res.rate == TARGET_RATE else verdict.lower()}"
            f"{'' if res.rate == TARGET_RATE else ', for reference'}); transport floor p99 {fmt(floor.p99) if floor else '-'} ms")


# -- the run -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="1000,5000", help="offered rates, bars/s")
    p.add_argument("--seconds", type=float, default=20.0, help=f"length of each phase (bars capped at {MAX_PHASE_BARS:,})")
    p.add_argument("--warm-seconds", type=float, default=5.0, help="paced warm-up at each rate before measuring")
    p.add_argument("--quick", action="store_true", help="a ~2 minute smoke run: 4 s phases, 2 s warm-up")
    p.add_argument("--engine", default="python", choices=["python", "spark"])
    p.add_argument("--trigger", default="100 milliseconds", help="Spark micro-batch trigger (--engine spark)")
    p.add_argument("--master", default="local[2]")
    p.add_argument("--tickers", type=int, default=20)
    p.add_argument("--partitions", type=int, default=4, help="market.bars and bench.floor partitions")
    p.add_argument("--linger-ms", type=int, help="the load generator's linger.ms (default: the project's, "
                   "HFT_KAFKA_LINGER_MS or 20)")
    p.add_argument("--py-loop", default="drain", choices=["drain", "window"],
                   help="python engine and floor consumer loop: drain (what is queued, else block for the next) "
                        "or window (consume(n, timeout): bench/streaming's)")
    p.add_argument("--py-timeout-ms", type=float, default=100.0, help="drain: idle wait; window: the window")
    p.add_argument("--py-max-batch", type=int, default=20000)
    p.add_argument("--fetch-wait-ms", type=int, default=10, help="consumer fetch.wait.max.ms (the Spark job's 10)")
    p.add_argument("--fetch-min-bytes", type=int, default=1, help="consumer fetch.min.bytes")
    p.add_argument("--traded", default="2",
                   help="tickers the executor trades (of --tickers; the others are outside its universe and "
                        "refused as unknown instruments), or 'all': an order on nearly every bar, the worst case")
    p.add_argument("--exec-env", help="more executor settings, NAME=value,... (HFT_EXEC_ prefix optional)")
    p.add_argument("--jit-rounds", type=int, default=4, help="Spark: most JIT warm-up rounds")
    p.add_argument("--stall-s", type=float, default=30.0)
    p.add_argument("--json", help="write the results here too")
    for hidden in ("--_worker", "--_bootstrap", "--_redis", "--_tickers", "--_group", "--_metrics_port"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args._worker:
        args.py_drain = args.py_loop == "drain"
        return {"python": python_worker, "floor": floor_worker, "relay": relay_worker}[args._worker](args)

    if args.quick:
        args.seconds, args.warm_seconds, args.jit_rounds = 4.0, 2.0, min(args.jit_rounds, 2)
    rates = sorted(float(x) for x in args.rates.split(",") if x.strip())
    sizes = [min(MAX_PHASE_BARS, int(r * args.seconds)) for r in rates]
    if args.linger_ms is not None:
        os.environ["HFT_KAFKA_LINGER_MS"] = str(args.linger_ms)  # this process's producer (the collector)

    HOME.mkdir(parents=True, exist_ok=True)
    (HOME / "logs").mkdir(exist_ok=True)
    kafka, controller, redis_port, mlflow, kafka_metrics, engine_port, exec_port = free_ports(7)
    env = {"HFT_HOME": str(HOME), "HFT_KAFKA_PORT": str(kafka), "HFT_KAFKA_CONTROLLER_PORT": str(controller),
           "HFT_KAFKA_METRICS_PORT": str(kafka_metrics), "HFT_REDIS_PORT": str(redis_port),
           "HFT_MLFLOW_PORT": str(mlflow), "MLFLOW_TRACKING_URI": f"sqlite:///{HOME / 'mlflow.db'}",
           "HFT_BARS_PARTITIONS": str(args.partitions), "HFT_REPO_ROOT": str(ROOT)}
    os.environ.update(env)
    from hft import stack
    from hft.redis_conn import connect
    from hft.stack import TopicSpec, ensure_topics

    config = stack.StackConfig.from_env()
    stack.down(config, ("kafka", "redis"))  # leftovers of an interrupted run (pid files under run/)
    shutil.rmtree(config.run_dir, ignore_errors=True)
    journal_dir = HOME / "executor"
    shutil.rmtree(journal_dir, ignore_errors=True)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    procs: dict[str, Engine] = {}
    results: list[RateResult] = []
    probes: dict = {}
    say(f"bench/e2e: {os.cpu_count()} cores, {load_avg()}, engine {args.engine}, rates {args.rates}, "
        f"{args.seconds:g} s phases{' (quick)' if args.quick else ''}")
    try:
        t0 = time.monotonic()
        stack.up(config, ("kafka", "redis"))
        say(f"stack: kafka {config.kafka_bootstrap}, redis {config.redis_url} up in {time.monotonic() - t0:.0f}s")
        say(f"model: {ensure_champion(HOME)}")
        t0 = time.monotonic()
        names, warm, chunks, ready = make_data(args.tickers, 1, sizes)
        mk = lambda label, rate, msgs, ready: Phase(label, rate, msgs, {(m.ticker, m.ts_ms) for m in msgs} & ready)  # noqa: E731
        phases = [mk(f"{r:,.0f}/s", r, c, ready) for r, c in zip(rates, chunks)]
        rounds = args.jit_rounds if args.engine == "spark" else 1
        jit_sizes = [min(MAX_PHASE_BARS, int(r * args.warm_seconds)) for r in rates] * rounds
        jit_names, _, jit_chunks, jit_ready = make_data(args.tickers, 0, jit_sizes, prefix="W")
        jit = [[mk(f"warm-up {r:,.0f}/s", r, c, jit_ready) for r, c in zip(rates, jit_chunks[i: i + len(rates)])]
               for i in range(0, len(jit_chunks), len(rates))]
        ctx = Ctx(args, config, {**os.environ}, names + jit_names, mk("warm-up", 0, warm, ready), jit, phases,
                  connect(config.redis_url))
        say(f"data: {args.tickers} tickers, warm-up session {len(warm)} bars, phases "
            + ", ".join(f"{len(ph.msgs)} bars at {ph.rate:,.0f}/s ({len(ph.expected)} predictable)" for ph in phases)
            + f" ({time.monotonic() - t0:.0f}s to generate)")
        say(f"broker warm-up: {50_000 if args.quick else 200_000:,} messages produced and consumed in "
            f"{warm_broker(ctx, 50_000 if args.quick else 200_000):.0f}s")
        reset(ctx)  # fresh stream topics, Redis flushed
        ensure_topics(config.kafka_bootstrap, {FLOOR_TOPIC: TopicSpec(partitions=args.partitions, retention_ms=3_600_000)})
        procs["floor"] = Engine("floor", _worker_cmd(ctx, "floor", f"bench-e2e-floor-{time.time_ns()}"),
                                HOME / "logs" / "floor.log", ctx.env)
        procs["relay"] = Engine("relay", _worker_cmd(ctx, "relay", "-"), HOME / "logs" / "relay.log", ctx.env)
        procs["engine"] = start_engine(ctx, engine_port)
        procs["executor"] = start_executor(ctx, exec_port, journal_dir)
        journal = JournalTail(journal_dir)
        pids = {svc: st.pid for svc, st in stack.status(config).items() if svc in ("kafka", "redis")}
        cpu = Cpu(procs, pids)

        from hft.schemas import RedisKeys
        from hft.streaming.messages import BARS_TOPIC

        t0 = time.monotonic()
        reader = StreamReader(ctx.redis, RedisKeys().predictions)
        produce(config.kafka_bootstrap, warm, 0, BARS_TOPIC)
        got = collect_after(reader, ctx.warm.expected, 0, [procs["engine"], procs["executor"]], 600, 240)
        if len(got) < len(ctx.warm.expected):
            raise RuntimeError(f"warm-up gave {len(got)}/{len(ctx.warm.expected)} predictions:\n{procs['engine'].tail()}")
        if not wait_executor(ctx.redis, RedisKeys().predictions, procs["executor"], 120):
            raise RuntimeError(f"the executor did not keep up with the warm-up:\n{procs['executor'].tail()}")
        orders = ctx.redis.xlen(RedisKeys().orders)
        say(f"running: warm-up session of {len(warm)} bars predicted and executed {time.monotonic() - t0:.1f}s after "
            f"start ({orders} order/fill records)")
        if orders == 0:
            raise RuntimeError("the warm-up session produced no order: check the executor's settings\n"
                               + procs["executor"].tail())
        warm_up(ctx, procs, cpu)
        time.sleep(1.0)
        ports = {"engine": engine_port, "executor": exec_port}
        for ph in phases:
            res = RateResult(ph.rate)
            say(f"\n== {ph.rate:,.0f} bars/s: {len(ph.msgs)} bars ({load_avg()})")
            run_floor(ctx, ph, procs, res, cpu)
            for r in res.rows:
                say(f"   {r.phase:<26} {r.count}/{r.expected}: p50 {fmt(r.p50)} ms, p99 {fmt(r.p99)} ms, "
                    f"p99.9 {fmt(r.p999)} ms")
            time.sleep(1.0)
            n = len(res.rows)
            run_full(ctx, ph, procs, journal, res, cpu, ports)
            for r in res.rows[n:]:
                say(f"   {r.phase:<26} {r.count}/{r.expected}: p50 {fmt(r.p50)} ms, p99 {fmt(r.p99)} ms, "
                    f"p99.9 {fmt(r.p999)} ms ({load_avg()})")
            results.append(res)
            time.sleep(1.0)
        probes = probe_publication(ctx, 60 if args.quick else 200)
    finally:
        for proc in reversed(list(procs.values())):
            proc.stop()
        say(f"\nstack down: {stack.down(config, ('kafka', 'redis'))}")

    say(f"\n== Results ({time.monotonic() - started:.0f}s in all; {load_avg()}; engine {args.engine}, "
        f"executor trading {args.traded} of {args.tickers} tickers"
        + (f", trigger {args.trigger}" if args.engine == "spark" else f", {args.py_loop} loop")
        + f"; other work shares these {os.cpu_count()} cores: figures are noisy, compare with the same run's floor)\n")
    print_report(results, args, probes)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                                               "results": [asdict(r) for r in results],
                                               "probes": probes}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
