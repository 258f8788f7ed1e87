"""Benchmark of real-time inference: numpy :class:`hft.model.fast.FastPredictor` against the Keras network.

Run from the repository root::

    .venv/bin/python bench/inference.py [--fast-calls 50000] [--call-calls 10000] [--predict-calls 500]
                                        [--fast-batches 1000] [--call-batches 300] [--predict-batches 100]
                                        [--json PATH]

Model: the default ``mlp`` (:class:`hft.model.config.ModelConfig`: widths 32-64-128-256, dropout 0.1, no batch
norm) over 25 features. Its weights come from a 1-epoch fit on random data (raw features with offsets and
spreads like real ones, the scaler fitted on them), saved with ``save_weights_file`` to a temporary
``model_weights.h5``; both sides load that same file (``load_weights_file`` for Keras,
``FastPredictor.from_weights_file`` for numpy). Trained or untrained weights make no difference to dense
matmul timings.

Paths measured (each returns a Python float at batch 1 / a numpy array at batch 1024):

* ``keras predict``: ``model.predict(x, verbose=0)`` on pre-scaled float32 input.
* ``keras call``: ``model(x, training=False)``, converted to numpy, on pre-scaled float32 input.
* ``fast``: ``FastPredictor.predict_one(raw_row)`` at batch 1 and ``predict_proba(raw_rows)`` at batch 1024,
  on RAW float64 features: the scaler is included in the fast path's timings and excluded from Keras'
  (ratios are therefore conservative).

Measurements, all in one run of this script:

* batch-1 latency: percentiles p50 / p99 / p99.9 of single calls (``time.perf_counter_ns`` around each call)
  after a warm-up, cycling through 1024 different rows; sample counts are printed (Keras ``predict`` gets
  fewer calls because each takes milliseconds).
* batch-1024 throughput: rows/s = 1024 / median time of one batch call, over the printed number of batches.

Each is measured twice, each time in a fresh worker process:

* ``1 thread`` (the per-core figure): OpenBLAS limited to 1 thread with ``threadpoolctl``, TensorFlow's
  intra- and inter-op thread pools set to 1 before TensorFlow starts.
* ``unrestricted``: library defaults (as many threads as cores).

Devices: the batch path (``predict_proba``) at batch 1, 256 and 4096 on the CPU (1 BLAS thread, and all cores)
and, when one is usable (CuPy sees an NVIDIA GPU: :func:`hft.model.fast.gpu_array_module`), on the GPU:
latency per call (raw features in, probabilities back in host memory: the copies are included) and rows/s.
``--devices-only --weights model_weights.h5`` measures only that, without TensorFlow (a GPU machine that has
CuPy but no TensorFlow; make the file here with ``--prepare --weights PATH``).

Targets (from the issue): fast path batch-1 p50 <= 50 us; >= 100,000 rows/s per core at batch 1024 (judged
on the ``1 thread`` figures). Timings are sensitive to other load on the machine: the load average is printed
before and after; ratios compare paths measured in the same worker, minutes apart at most.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_FEATURES = 25
BATCH = 1024
TARGET_P50_US = 50.0
TARGET_ROWS_PER_S = 100_000
MODES = ("1 thread", "unrestricted")
PATHS = ("keras predict", "keras call", "fast")


# ------------------------------------------------------------------------------------------ helpers
def raw_features(n: int, seed: int) -> np.ndarray:
    """Raw-looking features: offsets far from zero, spreads from tiny to large."""
    rng = np.random.default_rng(seed)
    offset = np.random.default_rng(0).normal(0.0, 100.0, N_FEATURES)
    spread = np.random.default_rng(1).uniform(0.01, 10.0, N_FEATURES)
    return offset + spread * rng.normal(size=(n, N_FEATURES))


def latencies_ns(fn, inputs: list, calls: int, warmup: int) -> np.ndarray:
    m = len(inputs)
    for i in range(warmup):
        fn(inputs[i % m])
    gc.collect()
    out = np.empty(calls, np.int64)
    clock = time.perf_counter_ns
    for i in range(calls):
        x = inputs[i % m]
        t0 = clock()
        fn(x)
        out[i] = clock() - t0
    return out


def summarize_latency(ns: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(ns, [50, 99, 99.9]) / 1e3
    return {"p50_us": float(p50), "p99_us": float(p99), "p999_us": float(p999), "n": int(len(ns))}


def batch_rows_per_s(fn, x, batches: int, warmup: int) -> dict:
    ns = latencies_ns(fn, [x], batches, warmup)
    return {"rows_per_s": BATCH / (float(np.median(ns)) / 1e9), "n": int(batches)}


# ------------------------------------------------------------------------------------------ workers
def prepare(path: Path) -> None:
    """Fit the default mlp for one epoch on random data and write ``model_weights.h5`` to ``path``."""
    from hft.model.config import ModelConfig
    from hft.model.network import Scaler, build_network, save_weights_file

    config = ModelConfig()
    x = raw_features(8192, seed=2)
    scaler = Scaler.fit(x)
    xs = scaler.transform(x)
    y = (xs[:, :5].sum(axis=1) + np.random.default_rng(3).normal(size=len(xs)) > 0).astype(np.float32)
    model = build_network(config, N_FEATURES)
    model.fit(xs, y, epochs=1, batch_size=config.batch_size, verbose=0)
    save_weights_file(path, model, config, [f"f{i:02d}" for i in range(N_FEATURES)], scaler)


def worker(mode: str, path: Path, args: argparse.Namespace) -> dict:
    """All measurements of one thread mode; returns them as a dict (printed as JSON by the worker)."""
    import tensorflow as tf
    from threadpoolctl import threadpool_info, threadpool_limits

    single = mode == MODES[0]
    if single:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)

    from hft.model.fast import FastPredictor
    from hft.model.network import load_weights_file

    model, wf = load_weights_file(path)
    fast = FastPredictor.from_weights_file(path)
    rows = raw_features(BATCH, seed=4)
    scaled = wf.scaler.transform(rows)
    raw_rows = list(rows)                                       # 1024 views of shape (25,)
    scaled_rows = [scaled[i : i + 1] for i in range(BATCH)]     # 1024 views of shape (1, 25)

    keras_batch = np.asarray(model(scaled, training=False), np.float64).reshape(-1)
    fast_batch = fast.predict_proba(rows)
    fast_one = np.array([fast.predict_one(r) for r in raw_rows])
    result: dict = {
        "mode": mode,
        "max_abs_diff_batch": float(np.max(np.abs(fast_batch - keras_batch))),
        "max_abs_diff_one": float(np.max(np.abs(fast_one - keras_batch))),
        "latency": {},
        "throughput": {},
    }

    with threadpool_limits(limits=1 if single else None, user_api="blas"):
        result["blas_threads"] = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        result["tf_threads"] = [tf.config.threading.get_intra_op_parallelism_threads(),
                                tf.config.threading.get_inter_op_parallelism_threads()]  # 0: TF default
        one = {
            "keras predict": (lambda x: float(model.predict(x, verbose=0)[0, 0]), scaled_rows,
                              args.predict_calls, 20),
            "keras call": (lambda x: float(np.asarray(model(x, training=False))[0, 0]), scaled_rows,
                           args.call_calls, 200),
            "fast": (fast.predict_one, raw_rows, args.fast_calls, 2000),
        }
        for name, (fn, inputs, calls, warmup) in one.items():
            result["latency"][name] = summarize_latency(latencies_ns(fn, inputs, calls, warmup))
        many = {
            "keras predict": (lambda x: model.predict(x, batch_size=BATCH, verbose=0), scaled,
                              args.predict_batches, 5),
            "keras call": (lambda x: np.asarray(model(x, training=False)), scaled, args.call_batches, 20),
            "fast": (fast.predict_proba, rows, args.fast_batches, 50),
        }
        for name, (fn, x, batches, warmup) in many.items():
            result["throughput"][name] = batch_rows_per_s(fn, x, batches, warmup)
    return result


DEVICE_BATCHES = (1, 256, 4096)


def devices_worker(path: Path, args: argparse.Namespace) -> dict:
    """predict_proba at each of DEVICE_BATCHES on the CPU (1 thread, all cores) and the GPU if usable."""
    from threadpoolctl import threadpool_limits

    from hft.model.fast import FastPredictor, gpu_array_module

    fast = FastPredictor.from_weights_file(path)
    targets = [("cpu (1 thread)", fast.on("cpu"), 1), (f"cpu ({os.cpu_count()} cores)", fast.on("cpu"), None)]
    if gpu_array_module() is not None:
        gpu = fast.on("gpu")
        targets.append((gpu.device, gpu, None))
    out: dict = {"rows": []}
    for name, pred, threads in targets:
        with threadpool_limits(limits=threads, user_api="blas"):
            for batch in DEVICE_BATCHES:
                inputs = [raw_features(batch, seed=10 + k) for k in range(8)]
                calls = max(20, min(args.device_calls, args.device_calls * 64 // batch))
                ns = latencies_ns(pred.predict_proba, inputs, calls, warmup=max(5, calls // 10))
                row = summarize_latency(ns)
                row.update(device=name, batch=batch, rows_per_s=batch / (float(np.median(ns)) / 1e9))
                out["rows"].append(row)
    ref = fast.predict_proba(raw_features(4096, seed=99))
    if len(targets) == 3:
        out["max_abs_diff_gpu"] = float(np.max(np.abs(targets[2][1].predict_proba(raw_features(4096, seed=99)) - ref)))
    return out


def devices_report(dev: dict) -> str:
    rows = dev["rows"]
    base = {r["batch"]: r["rows_per_s"] for r in rows if r["device"] == "cpu (1 thread)"}
    head = f"{'device':<28}{'batch':>7}{'p50 us':>11}{'p99 us':>11}{'calls':>8}{'rows/s':>15}{'vs 1 CPU thread':>17}"
    lines = ["Batch inference by device (predict_proba: raw features in, probabilities in host memory out)", head,
             "-" * len(head)]
    for r in rows:
        lines.append(f"{r['device']:<28}{r['batch']:>7}{r['p50_us']:>11.1f}{r['p99_us']:>11.1f}{r['n']:>8}"
                     f"{r['rows_per_s']:>15,.0f}{r['rows_per_s'] / base[r['batch']]:>16.1f}x")
    if "max_abs_diff_gpu" in dev:
        lines.append(f"max |gpu - cpu| over 4096 rows: {dev['max_abs_diff_gpu']:.1e}")
    else:
        lines.append("no usable GPU here (CuPy with an NVIDIA GPU): CPU rows only")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ driver
def run_child(argv: list[str]) -> str:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"benchmark worker {argv[:2]} failed with exit code {proc.returncode}")
    return proc.stdout


def fast_load_seconds(path: Path) -> tuple[float, bool]:
    """Time ``import hft.model.fast`` + ``from_weights_file`` in this process (TensorFlow never imported)."""
    t0 = time.perf_counter_ns()
    from hft.model.fast import FastPredictor

    FastPredictor.from_weights_file(path)
    seconds = (time.perf_counter_ns() - t0) / 1e9
    return seconds, any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)


def versions() -> str:
    from importlib.metadata import version

    out = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for dist in ("tensorflow-cpu", "tensorflow", "keras"):
        try:
            out.append(f"{dist} {version(dist)}")
        except Exception:  # noqa: BLE001 - a missing distribution is simply not listed
            pass
    return ", ".join(out)


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def report(results: list[dict], load_s: float, tf_loaded: bool, loads: tuple[float, float]) -> str:
    lines = [
        "Inference benchmark: default mlp (widths 32-64-128-256, dropout 0.1), 25 features, "
        "weights from a 1-epoch fit on random data",
        f"host: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {versions()}",
        f"load average (1 min) before/after: {loads[0]:.2f} / {loads[1]:.2f}",
        f"import hft.model.fast + FastPredictor.from_weights_file: {load_s * 1e3:.0f} ms "
        f"(TensorFlow/Keras imported: {'yes' if tf_loaded else 'no'})",
    ]
    for r in results:
        lines.append(f"max |fast - keras| over 1024 rows [{r['mode']}]: predict_proba {r['max_abs_diff_batch']:.1e}, "
                     f"predict_one {r['max_abs_diff_one']:.1e}")
    lines.append("")
    head = (f"{'threads':<13}{'path':<15}{'p50 us':>10}{'p99 us':>10}{'p99.9 us':>10}{'calls':>8}{'p50 vs fast':>13}"
            f"  |{'rows/s @1024':>14}{'batches':>9}{'fast vs':>9}")
    lines += [head, "-" * len(head)]
    for r in results:
        threads = f"{r['mode']}"
        fast_lat, fast_tp = r["latency"]["fast"], r["throughput"]["fast"]
        for path in PATHS:
            lat, tp = r["latency"][path], r["throughput"][path]
            lines.append(
                f"{threads:<13}{path:<15}{lat['p50_us']:>10.1f}{lat['p99_us']:>10.1f}{lat['p999_us']:>10.1f}"
                f"{lat['n']:>8}{lat['p50_us'] / fast_lat['p50_us']:>12.1f}x"
                f"  |{tp['rows_per_s']:>14,.0f}{tp['n']:>9}{fast_tp['rows_per_s'] / tp['rows_per_s']:>8.1f}x"
            )
            threads = ""
        lines.append(f"{'':<13}(BLAS threads {r['blas_threads']}, TF intra/inter-op {r['tf_threads']}; 0 = TF default)")
    single, multi = results
    p50_1, p50_n = single["latency"]["fast"]["p50_us"], multi["latency"]["fast"]["p50_us"]
    tp_1 = single["throughput"]["fast"]["rows_per_s"]
    tp_n = multi["throughput"]["fast"]["rows_per_s"]
    lines += [
        "",
        "ratios: 'p50 vs fast' = path p50 / fast p50 (how many times slower); 'fast vs' = fast rows/s / path rows/s",
        f"target fast batch-1 p50 <= {TARGET_P50_US:.0f} us: {p50_1:.1f} us (1 thread), {p50_n:.1f} us (unrestricted)"
        f" -> {met(max(p50_1, p50_n) <= TARGET_P50_US)}",
        f"target >= {TARGET_ROWS_PER_S:,} rows/s per core at batch 1024: {tp_1:,.0f} rows/s (1 thread)"
        f" -> {met(tp_1 >= TARGET_ROWS_PER_S)}   [unrestricted: {tp_n:,.0f} rows/s]",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast-calls", type=int, default=50_000, help="batch-1 calls timed, fast path")
    parser.add_argument("--call-calls", type=int, default=10_000, help="batch-1 calls timed, keras model(x)")
    parser.add_argument("--predict-calls", type=int, default=500, help="batch-1 calls timed, keras predict")
    parser.add_argument("--fast-batches", type=int, default=1000, help="batch-1024 calls timed, fast path")
    parser.add_argument("--call-batches", type=int, default=300, help="batch-1024 calls timed, keras model(x)")
    parser.add_argument("--predict-batches", type=int, default=100, help="batch-1024 calls timed, keras predict")
    parser.add_argument("--device-calls", type=int, default=2000, help="calls timed per device and batch (fewer for big batches)")
    parser.add_argument("--devices-only", action="store_true",
                        help="only the devices table, from --weights (no TensorFlow needed)")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--devices-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help="--devices-only: the model_weights.h5 to load; --prepare: where to write it")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if args.prepare:
        prepare(args.weights)
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.weights, args)))
        return 0
    if args.devices_worker:
        print(json.dumps(devices_worker(args.weights, args)))
        return 0
    dev_args = [f"--device-calls={args.device_calls}"]
    if args.devices_only:
        if args.weights is None:
            raise SystemExit("--devices-only needs --weights model_weights.h5 (make one with --prepare --weights PATH)")
        dev = json.loads(run_child(["--devices-worker", "--weights", str(args.weights), *dev_args]).strip().splitlines()[-1])
        print(f"host: {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; {versions()}")
        print(devices_report(dev))
        if args.json:
            args.json.write_text(json.dumps({"devices": dev}, indent=2))
        return 0

    counts = [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in
              ("fast_calls", "call_calls", "predict_calls", "fast_batches", "call_batches", "predict_batches")]
    before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as tmp:
        path = Path(tmp) / "model_weights.h5"
        run_child(["--prepare", "--weights", str(path)])
        load_s, tf_loaded = fast_load_seconds(path)
        results = [json.loads(run_child(["--worker", mode, "--weights", str(path), *counts]).strip().splitlines()[-1])
                   for mode in MODES]
        dev = json.loads(run_child(["--devices-worker", "--weights", str(path), *dev_args]).strip().splitlines()[-1])
    after = os.getloadavg()[0]
    print(report(results, load_s, tf_loaded, (before, after)))
    print()
    print(devices_report(dev))
    if args.json:
        args.json.write_text(json.dumps({"load_s": load_s, "results": results, "devices": dev}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
