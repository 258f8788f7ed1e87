"""FastPredictor's batch path on a device (``on()``): the CPU here; the GPU (CuPy) where one is usable, against
the CPU's results. Random weights through the constructor: no TensorFlow needed, so this file runs on a GPU
machine that has only numpy, h5py and CuPy (``pytest --noconftest tests/model/test_fast_devices.py``)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from hft.model.config import ModelConfig
from hft.model.fast import FastPredictor, _expected_weights, gpu_array_module
from hft.model.network import Scaler

N = 25
FEATURES = [f"f{i:02d}" for i in range(N)]
CONFIGS = {"mlp": ModelConfig(), "conv1d": ModelConfig(architecture="conv1d"),
           "mlp_batchnorm": ModelConfig(batch_norm=True)}
GPU = gpu_array_module() is not None


MEAN = np.random.default_rng(11).normal(0, 50, N)
SCALE = np.random.default_rng(12).uniform(0.01, 5, N)
TOLERANCE = 1e-5  # as FastPredictor against Keras (tests/model/test_fast.py): float32 after the first layer


def predictor(config: ModelConfig, seed: int = 0) -> FastPredictor:
    rng = np.random.default_rng(seed)
    weights = []
    for _, var, shape in _expected_weights(config, N):
        w = rng.normal(0, 1 / np.sqrt(shape[0]), shape)
        weights.append(np.abs(w) + 0.5 if var in ("gamma", "moving_variance") else w)
    scaler = Scaler(mean=MEAN, scale=SCALE)
    return FastPredictor(config, FEATURES, scaler, weights)


def rows(config: ModelConfig, n: int, seed: int = 1) -> np.ndarray:
    """Raw features as the scaler saw them in training: offsets far from zero, spreads from tiny to large."""
    rng = np.random.default_rng(seed)
    shape = (n, config.lookback, N) if config.architecture == "conv1d" else (n, N)
    return MEAN + SCALE * rng.normal(0, 1, shape)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_on_cpu_is_the_same_predictor(name):
    fast = predictor(CONFIGS[name])
    cpu = fast.on("cpu")
    x = rows(CONFIGS[name], 300)
    assert cpu.device == "cpu" and cpu is not fast
    np.testing.assert_array_equal(cpu.predict_proba(x), fast.predict_proba(x))


def test_auto_picks_the_gpu_when_one_is_usable_else_the_cpu():
    fast = predictor(CONFIGS["mlp"]).on("auto")
    assert fast.device.startswith("gpu:") if GPU else fast.device == "cpu"


@pytest.mark.skipif(GPU, reason="this machine has a usable GPU")
def test_gpu_without_one_is_refused_with_what_it_needs():
    with pytest.raises(RuntimeError, match="CuPy"):
        predictor(CONFIGS["mlp"]).on("gpu")


def test_an_unknown_device_is_refused():
    with pytest.raises(ValueError, match="auto, cpu, gpu"):
        predictor(CONFIGS["mlp"]).on("tpu")


def test_a_predictor_on_a_device_pickles_as_a_cpu_predictor():
    fast = predictor(CONFIGS["mlp"]).on("auto")
    clone = pickle.loads(pickle.dumps(fast))
    x = rows(CONFIGS["mlp"], 50)
    assert clone.device == "cpu"
    np.testing.assert_allclose(clone.predict_proba(x), fast.predict_proba(x), atol=1e-6)


def test_the_stream_refuses_an_unknown_inference_device(monkeypatch):
    from hft.streaming.champion import ChampionModel

    monkeypatch.setenv("HFT_INFERENCE_DEVICE", "quantum")
    with pytest.raises(ValueError, match="HFT_INFERENCE_DEVICE"):
        ChampionModel()


@pytest.mark.skipif(not GPU, reason="needs an NVIDIA GPU and CuPy (run on a GPU machine)")
@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("n", [1, 256, 4096, 10_000])
def test_the_gpu_gives_the_cpus_probabilities(name, n):
    fast = predictor(CONFIGS[name], seed=3)
    gpu = fast.on("gpu")
    x = rows(CONFIGS[name], n, seed=n)
    x[0, ...] = np.nan  # NaN in a row: NaN for that row only, on the GPU too
    want, got = fast.predict_proba(x), gpu.predict_proba(x)
    assert gpu.device.startswith("gpu:") and got.dtype == np.float64 and got.shape == (n,)
    assert np.isnan(got[0]) and np.isnan(want[0])
    np.testing.assert_allclose(got[1:], want[1:], rtol=0, atol=TOLERANCE)
    assert np.std(want[1:]) > 0.01 or n < 3  # the probabilities vary: a real comparison
    row = rows(CONFIGS[name], 1, seed=7)[0]
    assert gpu.predict_one(row) == fast.predict_one(row)  # predict_one stays on the CPU
