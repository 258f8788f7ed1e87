"""Real-time inference for the direction network in plain numpy (no TensorFlow, no Keras).

:class:`FastPredictor` reproduces :func:`hft.model.network.build_network`'s forward pass at inference
(``training=False``) from the self-describing ``model_weights.h5``::

    predictor = FastPredictor.from_weights_file("model_weights.h5")   # no TF import, milliseconds
    p = predictor.predict_one(raw_row)          # mlp: shape (n_features,) -> float
    ps = predictor.predict_proba(raw_rows)      # mlp: (n, n_features); conv1d: (n, lookback, n_features)

Inputs are RAW features, in the order of :attr:`FastPredictor.features`: the scaler is part of the model.

What happens at load time (exactly equivalent algebra, nothing approximated):

* The scaler ``z = (x - mean) / scale`` is folded into the first layer (the first Dense for ``mlp``,
  the Conv1D kernel for ``conv1d``): ``W' = W / scale`` (per input feature), ``b' = b - (mean / scale) @ W``.
* Batch norm after a Dense, ``gamma * (h - moving_mean) / sqrt(moving_variance + eps) + beta``, is folded
  into that Dense: ``W' = W * a``, ``b' = (b - moving_mean) * a + beta`` with ``a = gamma / sqrt(var + eps)``.
  ``eps`` is read from the Keras layers by :meth:`FastPredictor.from_keras`; the weights file does not store
  it, so :meth:`FastPredictor.from_weights_file` uses :data:`KERAS_BN_EPSILON` (1e-3, Keras' default,
  which is what ``build_network`` uses; a test pins the two together).
* Dropout is the identity at inference and disappears.
* Conv1D (``'valid'`` padding, stride 1, ReLU) runs as one matmul over gathered windows (im2col), then the
  row-major flatten of ``(steps, filters)`` that Keras' ``Flatten`` does.

The hot path is then ``relu(x @ W + b)`` four times and ``sigmoid(h @ w + b)``.

Precision (why two dtypes):

* The first layer always runs in float64. With the scaler folded in, it computes
  ``x @ (W / scale) - (mean / scale) @ W``; raw features with a large offset relative to their spread
  (a price of 150 moving by cents) would lose digits to cancellation in float32. In float64 the result is
  at least as precise as ``Scaler.transform`` (float64, then rounded to float32) followed by Keras.
* :meth:`predict_one` stays in float64 throughout: at batch 1 the cost is per-call overhead, not
  arithmetic, so float64 costs nothing measurable and gives the most accurate result.
* :meth:`predict_proba` runs the layers after the first in float32, like Keras itself: the matmuls
  dominate at large batches and float32 roughly triples single-core throughput (see
  ``bench/inference.py``); the difference from the Keras model stays around 1e-7 (tests require <= 1e-5).

Non-finite input: NaN (or inf) anywhere in a row makes that row's probability NaN (it propagates through
the matmuls, ``np.maximum`` and the sigmoid) -- no error is raised. Callers filter rows with missing
features upstream, as the training pipeline does.

GPU: :meth:`FastPredictor.on` gives the same predictor with its batch path (:meth:`predict_proba`) on an NVIDIA
GPU through CuPy (the same arrays and the same algebra; CuPy is optional: ``pip install cupy-cuda12x``, or
``cupy-cuda13x``, on a machine with a GPU). ``on("auto")`` picks the GPU when CuPy sees one, else the CPU;
``HFT_INFERENCE_DEVICE`` (``auto``/``cpu``/``gpu``) is what the streaming job passes. :meth:`predict_one` stays on
the CPU: at batch 1 a GPU's launch and copy overheads cost more than the arithmetic (``bench/inference.py``).

Threads: a predictor can be shared between threads; :meth:`predict_one`'s pre-allocated scratch buffers
are per thread. A predictor pickles (for a Spark broadcast, a worker process) without its buffers.

BLAS threads: the batch matmuls go through numpy's OpenBLAS, which by default uses one thread per core.
On a busy host that is much slower, not faster: on the 2-core development machine under load, batch-1024
throughput fell from ~780k rows/s (1 BLAS thread) to 30k-110k rows/s (2 threads). Serving processes should
run with one BLAS thread (``OPENBLAS_NUM_THREADS=1`` before numpy is imported, or
``threadpoolctl.threadpool_limits(1)``) and scale out by process. Batch 1 (:meth:`predict_one`) is
unaffected (its matrix-vector products run on one thread either way).
"""

from __future__ import annotations

import copy
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np

from hft.model.config import ModelConfig
from hft.model.network import Scaler, WeightsFile, WeightsFileError, read_weights_file

__all__ = ["DEVICES", "FastPredictor", "KERAS_BN_EPSILON", "gpu_array_module"]

#: Where :meth:`FastPredictor.on` runs the batch path: the GPU when one is usable (else the CPU), the CPU, the GPU.
DEVICES = ("auto", "cpu", "gpu")


def gpu_array_module() -> Any:
    """CuPy when it is installed and sees a CUDA device, else None."""
    try:
        import cupy

        return cupy if cupy.cuda.runtime.getDeviceCount() > 0 else None
    except Exception:  # noqa: BLE001 - not installed, no driver, no device: the CPU it is
        return None

#: ``keras.layers.BatchNormalization``'s default epsilon, which ``build_network`` keeps. The weights file
#: does not record it; :meth:`FastPredictor.from_keras` reads the real value from the layers instead.
KERAS_BN_EPSILON = 1e-3

#: ``predict_proba`` works through large inputs in blocks of this many rows (bounded memory, cache-sized
#: intermediates: 4096 x 256 float32 is 4 MiB).
CHUNK_ROWS = 4096

_BN_VARS = ("gamma", "beta", "moving_mean", "moving_variance")


def _expected_weights(config: ModelConfig, n_features: int) -> list[tuple[str, str, tuple[int, ...]]]:
    """``(layer, variable, shape)`` of every weight ``build_network`` creates, in Keras' order."""
    spec: list[tuple[str, str, tuple[int, ...]]] = []
    fan_in = n_features
    if config.architecture == "conv1d":
        spec += [("conv", "kernel", (config.conv_kernel, n_features, config.conv_filters)),
                 ("conv", "bias", (config.conv_filters,))]
        fan_in = (config.lookback - config.conv_kernel + 1) * config.conv_filters
    for i, width in enumerate(config.widths):
        spec += [(f"dense_{i}", "kernel", (fan_in, width)), (f"dense_{i}", "bias", (width,))]
        if config.batch_norm:
            spec += [(f"bn_{i}", var, (width,)) for var in _BN_VARS]
        fan_in = width
    spec += [("up_probability", "kernel", (fan_in, 1)), ("up_probability", "bias", (1,))]
    return spec


def _assign(spec, weights: list[np.ndarray], names: list[str], source: str) -> dict[tuple[str, str], np.ndarray]:
    """Map stored arrays onto ``spec``: by name where the names say it (``.../layer/variable``), otherwise
    by position (Keras' weight order); every shape is checked either way."""
    if len(weights) != len(spec):
        raise WeightsFileError(
            f"{source}: {len(weights)} weight arrays, the network needs {len(spec)} "
            f"({', '.join(f'{layer}/{var}' for layer, var, _ in spec)})"
        )
    keys = [tuple(str(n).split("/")[-2:]) for n in names] if len(names) == len(weights) else []
    wanted = {(layer, var) for layer, var, _ in spec}
    if len(set(keys)) == len(spec) and set(keys) == wanted:
        by_key = dict(zip(keys, weights))
        arrays = {(layer, var): by_key[(layer, var)] for layer, var, _ in spec}
    else:
        arrays = {(layer, var): w for (layer, var, _), w in zip(spec, weights)}
    for layer, var, shape in spec:
        w = np.asarray(arrays[(layer, var)])
        if tuple(w.shape) != shape:
            raise WeightsFileError(f"{source}: {layer}/{var} has shape {tuple(w.shape)}, the network needs {shape}")
        if not np.issubdtype(w.dtype, np.number) or not np.all(np.isfinite(w)):
            raise WeightsFileError(f"{source}: {layer}/{var} holds non-finite or non-numeric values")
        arrays[(layer, var)] = w.astype(np.float64)
    return arrays


class FastPredictor:
    """The direction network's inference in numpy, scaler and batch norm folded into the matmuls.

    Build with :meth:`from_weights_file` (serving) or :meth:`from_keras` (right after training).
    """

    def __init__(
        self,
        config: ModelConfig,
        features: list[str],
        scaler: Scaler,
        weights: list[np.ndarray],
        names: list[str] | None = None,
        bn_epsilon: float | list[float] = KERAS_BN_EPSILON,
        source: str = "weights",
    ) -> None:
        features = [str(f) for f in features]
        n = len(features)
        if n == 0:
            raise WeightsFileError(f"{source}: no features")
        mean = np.asarray(scaler.mean, np.float64).reshape(-1)
        scale = np.asarray(scaler.scale, np.float64).reshape(-1)
        if mean.shape != (n,) or scale.shape != (n,):
            raise WeightsFileError(f"{source}: scaler has {mean.size}/{scale.size} columns for {n} features")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(scale)) and np.all(scale > 0)):
            raise WeightsFileError(f"{source}: scaler mean/scale must be finite with scale > 0")
        eps = [float(bn_epsilon)] * 4 if isinstance(bn_epsilon, (int, float)) else [float(e) for e in bn_epsilon]
        if len(eps) != 4 or any(not e > 0 for e in eps):
            raise ValueError(f"bn_epsilon must be one positive value or one per dense layer, got {bn_epsilon!r}")

        spec = _expected_weights(config, n)
        w = _assign(spec, list(weights), list(names or []), source)
        self._config = config
        self._features = features
        #: the training distribution of each raw feature (the scaler's mean and scale): drift is measured against it
        self.training_mean, self.training_scale = mean.copy(), scale.copy()
        self._conv = config.architecture == "conv1d"

        # Dense layers with batch norm folded in (float64).
        dense: list[tuple[np.ndarray, np.ndarray]] = []
        for i in range(4):
            kernel, bias = w[(f"dense_{i}", "kernel")], w[(f"dense_{i}", "bias")]
            if config.batch_norm:
                gamma, beta, mu, var = (w[(f"bn_{i}", v)] for v in _BN_VARS)
                if np.any(var < 0):
                    raise WeightsFileError(f"{source}: bn_{i}/moving_variance has negative values")
                a = gamma / np.sqrt(var + eps[i])
                kernel, bias = kernel * a, (bias - mu) * a + beta
            dense.append((kernel, bias))
        w_out = w[("up_probability", "kernel")][:, 0].copy()
        b_out = float(w[("up_probability", "bias")][0])

        # Scaler folded into the first layer (per input feature).
        if self._conv:
            k, f = config.conv_kernel, config.conv_filters
            steps = config.lookback - k + 1
            ck = w[("conv", "kernel")] / scale[None, :, None]                     # (k, n, f)
            cb = w[("conv", "bias")] - np.einsum("i,kif->f", mean / scale, w[("conv", "kernel")])
            self._conv_w = np.ascontiguousarray(ck.reshape(k * n, f))             # row index: tap * n + feature
            self._conv_b = cb
            self._window = np.arange(steps)[:, None] + np.arange(k)[None, :]      # (steps, k) -> input bar
            self._steps, self._filters = steps, f
            self._sample_shape: tuple[int, ...] = (config.lookback, n)
        else:
            k0, b0 = dense[0]
            dense[0] = (k0 / scale[:, None], b0 - (mean / scale) @ k0)
            self._sample_shape = (n,)

        # predict_proba: first layer float64, the rest float32 (see the module docstring).
        if self._conv:
            self._first64: tuple[np.ndarray, np.ndarray] | None = None
            rest = dense
        else:
            self._first64 = (np.ascontiguousarray(dense[0][0]), dense[0][1])
            rest = dense[1:]
        self._rest32 = [(np.ascontiguousarray(k, np.float32), b.astype(np.float32)) for k, b in rest]
        self._out32 = (w_out.astype(np.float32), np.float32(b_out))
        self._device = "cpu"
        self._xp: Any = np                # the batch path's array module: numpy, or cupy after on("gpu")
        self._params = self._batch_params()

        # predict_one: float64, each bias appended as the kernel's last row so that a layer is one
        # ``np.dot`` into a buffer whose trailing element is a constant 1, then one in-place ReLU.
        self._one_kernels = [np.ascontiguousarray(np.vstack([k, b[None, :]])) for k, b in dense]
        self._one_out = np.append(w_out, b_out)
        self._widths = [k.shape[1] for k, _ in dense]
        self._in_width = dense[0][0].shape[0]                                      # n, or steps * filters
        self._local = threading.local()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_weights_file(cls, path: str | Path) -> "FastPredictor":
        """Load ``model_weights.h5`` (:func:`hft.model.network.save_weights_file`) without TensorFlow.

        Raises :class:`~hft.model.network.WeightsFileError` (a ``ValueError``) when the file is missing,
        unreadable, not an hft weights file, or its arrays do not fit the network its config describes.
        """
        wf: WeightsFile = read_weights_file(path)
        return cls(wf.config, wf.features, wf.scaler, wf.weights, wf.names, KERAS_BN_EPSILON, source=str(path))

    @classmethod
    def from_keras(cls, model, config: ModelConfig, features: list[str], scaler: Scaler) -> "FastPredictor":
        """From a live Keras model built by ``build_network`` (e.g. right after training)."""
        eps = [KERAS_BN_EPSILON] * 4
        if config.batch_norm:
            eps = [float(model.get_layer(f"bn_{i}").epsilon) for i in range(4)]
        names = [str(v.path) for v in model.weights]
        return cls(config, features, scaler, model.get_weights(), names, eps, source=f"keras model {model.name!r}")

    # ------------------------------------------------------------------ properties
    @property
    def features(self) -> list[str]:
        """Feature names, in the column order inputs must have."""
        return list(self._features)

    @property
    def config(self) -> ModelConfig:
        return self._config

    @property
    def n_features(self) -> int:
        return len(self._features)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        """One sample's shape: ``(n_features,)`` for mlp, ``(lookback, n_features)`` for conv1d."""
        return self._sample_shape

    def __repr__(self) -> str:
        return (f"FastPredictor(architecture={self._config.architecture!r}, n_features={self.n_features}, "
                f"widths={self._config.widths}, batch_norm={self._config.batch_norm})")

    @property
    def device(self) -> str:
        """Where :meth:`predict_proba` runs: ``cpu``, or ``gpu:<device name>``."""
        return self._device

    def _batch_params(self) -> tuple:
        """The batch path's arrays on the CPU (numpy): conv weights and windows, first layer, the rest, output."""
        conv = (self._conv_w, self._conv_b, self._window) if self._conv else (None, None, None)
        return (*conv, self._first64, self._rest32, self._out32)

    def on(self, device: str = "auto") -> "FastPredictor":
        """This predictor with its batch path on ``device`` (:data:`DEVICES`): a copy, weights copied to the GPU
        once. ``gpu`` without a usable GPU raises RuntimeError saying why; ``auto`` then falls back to the CPU."""
        if device not in DEVICES:
            raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
        xp = None if device == "cpu" else gpu_array_module()
        if xp is None and device == "gpu":
            raise RuntimeError("no usable GPU: inference on the GPU needs an NVIDIA GPU with its driver and CuPy "
                               "(pip install cupy-cuda12x, or cupy-cuda13x for CUDA 13)")
        clone = copy.copy(self)
        clone._local = threading.local()
        clone._xp, clone._device, clone._params = np, "cpu", self._batch_params()
        if xp is not None:
            def put(a):
                return None if a is None else xp.asarray(a)

            conv_w, conv_b, window, first64, rest32, out32 = clone._params
            clone._params = (put(conv_w), put(conv_b), put(window),
                             None if first64 is None else (put(first64[0]), put(first64[1])),
                             [(put(k), put(b)) for k, b in rest32], (put(out32[0]), out32[1]))
            clone._xp = xp
            clone._device = f"gpu:{xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)['name'].decode()}"
        return clone

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        del state["_local"]
        # device arrays do not travel: the receiver gets the CPU predictor and may call on() again
        state["_xp"], state["_device"], state["_params"] = None, "cpu", None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()
        self._xp, self._params = np, self._batch_params()

    # ------------------------------------------------------------------ inference
    def _shape_error(self, shape: tuple[int, ...], what: str, expected: str) -> ValueError:
        return ValueError(
            f"{what} must have shape {expected} ({self._config.architecture}, {self.n_features} features"
            f"{f', lookback {self._config.lookback}' if self._conv else ''}), got {shape}"
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of "up" for RAW feature rows: ``(n, n_features)`` (mlp) or
        ``(n, lookback, n_features)`` (conv1d) -> float64 ``(n,)``. NaN in a row gives NaN for that row."""
        x = np.asarray(x)
        if x.ndim != len(self._sample_shape) + 1 or x.shape[1:] != self._sample_shape:
            raise self._shape_error(x.shape, "x", f"(n, {', '.join(map(str, self._sample_shape))})")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_) or np.iscomplexobj(x):
            raise ValueError(f"x must hold real numbers, got dtype {x.dtype}")
        n = x.shape[0]
        out = np.empty(n, np.float64)
        xp = self._xp
        for start in range(0, n, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n)
            z = self._forward(x[start:stop])
            out[start:stop] = z if xp is np else xp.asnumpy(z)
        # sigmoid, overflow-free: 1 / (1 + exp(-z)) == (1 + tanh(z / 2)) / 2
        np.multiply(out, 0.5, out=out)
        np.tanh(out, out=out)
        np.add(out, 1.0, out=out)
        np.multiply(out, 0.5, out=out)
        return out

    def _forward(self, x: np.ndarray) -> np.ndarray:
        """Logits for one block of rows (float64 in the first layer, float32 after it), on the batch path's
        device (numpy or cupy arrays in and out)."""
        xp = self._xp
        conv_w, conv_b, window, first64, rest32, out32 = self._params
        x = xp.asarray(x, dtype=xp.float64)
        if self._conv:
            n = x.shape[0]
            cols = x[:, window].reshape(n * self._steps, -1)                       # (n * steps, k * features)
            h = cols @ conv_w
            h += conv_b
            xp.maximum(h, 0.0, out=h)
            h = h.astype(xp.float32).reshape(n, self._steps * self._filters)       # Keras Flatten order
        else:
            kernel, bias = first64
            h = x @ kernel
            h += bias
            xp.maximum(h, 0.0, out=h)
            h = h.astype(xp.float32)
        for kernel, bias in rest32:
            h = h @ kernel
            h += bias
            xp.maximum(h, 0.0, out=h)
        w_out, b_out = out32
        z = h @ w_out
        z += b_out
        return z

    def _scratch(self):
        """This thread's buffers for :meth:`predict_one`: views and kernels in call order."""
        bufs = [np.ones(self._in_width + 1)] + [np.ones(width + 1) for width in self._widths]
        layers = tuple(
            (bufs[i], kernel, bufs[i + 1][:-1]) for i, kernel in enumerate(self._one_kernels)
        )
        conv_out = bufs[0][:-1].reshape(self._steps, self._filters) if self._conv else None
        scratch = (bufs[0][:-1], layers, bufs[-1], self._one_out, conv_out)
        self._local.scratch = scratch
        return scratch

    def predict_one(self, row: np.ndarray) -> float:
        """Probability of "up" for ONE raw sample: ``(n_features,)`` (mlp) or ``(lookback, n_features)``
        (conv1d). Float64 throughout, pre-allocated per-thread buffers; NaN in the row gives NaN."""
        try:
            first, layers, last, w_out, conv_out = self._local.scratch
        except AttributeError:
            first, layers, last, w_out, conv_out = self._scratch()
        if type(row) is not np.ndarray:
            row = np.asarray(row, np.float64)
        if row.shape != self._sample_shape:
            raise self._shape_error(row.shape, "row", str(self._sample_shape))
        if self._conv:
            cols = row.astype(np.float64, copy=False)[self._window].reshape(self._steps, -1)
            np.dot(cols, self._conv_w, out=conv_out)
            conv_out += self._conv_b
            np.maximum(first, 0.0, out=first)
        else:
            first[...] = row
        for src, kernel, dst in layers:
            np.dot(src, kernel, out=dst)
            np.maximum(dst, 0.0, out=dst)
        z = float(np.dot(last, w_out))
        return 0.5 + 0.5 * math.tanh(0.5 * z)
