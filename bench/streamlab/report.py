"""The benchmark's tables: latency and throughput per engine and phase, where the time and the CPU went."""

from __future__ import annotations

import os

from streamlab.common import say
from streamlab.measure import Row


def print_table(rows: list[Row]) -> None:
    base = {r.phase: r for r in rows if r.engine == "python"}
    w = max([len(r.engine) for r in rows] + [6])
    head = (f"{'engine':<{w}} {'offered/s':>9} {'bars':>6} {'sent/s':>7} {'achieved/s':>10} {'preds':>13} "
            f"{'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'vis p99':>8} {'batches':>7} "
            f"{'avg batch':>9} {'proc us/bar':>11} {'cpu ms/1k':>9} {'jit':>5} {'load':>5} {'thr vs py':>9} {'p99 vs py':>9} sustained")
    say(head)
    say("-" * len(head))
    for r in rows:
        b = base.get(r.phase)
        thr = f"{r.achieved / b.achieved:.2f}x" if b and r.engine != "python" else "-"
        p99 = f"{r.p99 / b.p99:.2f}x" if b and r.engine != "python" and b.p99 > 0 else "-"
        say(f"{r.engine:<{w}} {r.offered:>9,.0f} {r.bars:>6} {r.sent_rate:>7,.0f} {r.achieved:>10,.0f} "
             f"{f'{r.predictions}/{r.expected}':>13} {r.p50:>8,.0f} {r.p99:>8,.0f} {r.p999:>9,.0f} {r.max:>8,.0f} "
             f"{r.vis_p99:>8,.0f} {r.batches:>7} {r.mean_batch:>9,.0f} {r.proc_us_per_bar:>11,.0f} "
             f"{r.cpu_ms_per_1k:>9,.0f} {r.jit_cores:>5.2f} {r.load1:>5.1f} {thr:>9} {p99:>9} {'yes' if r.sustained else 'no'}")


def print_parts(rows: list[Row]) -> None:
    w = max([len(r.engine) for r in rows] + [6])
    say("\nWhere the time went (seconds over each phase's wall time; Spark parts from its progress reports):")
    for r in rows:
        parts = ", ".join(f"{k} {v:.2f}" for k, v in r.parts.items())
        say(f"  {r.engine:<{w}} {r.phase:>10} wall {r.wall_s:6.2f}s: {parts}")
    say("\nCPU used during each phase, in cores (CPU seconds / wall seconds; the machine has %d):" % os.cpu_count())
    for r in rows:
        cores = ", ".join(f"{k} {v / max(r.wall_s, 1e-9):.2f}" for k, v in r.cpu.items())
        say(f"  {r.engine:<{w}} {r.phase:>10}: {cores}, total {sum(r.cpu.values()) / max(r.wall_s, 1e-9):.2f}")
