"""FastPredictor (numpy inference) against the Keras network it replaces, and the weights file."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from hft.model.config import ModelConfig
from hft.model.fast import CHUNK_ROWS, KERAS_BN_EPSILON, FastPredictor, _expected_weights
from hft.model.network import (
    Scaler,
    WeightsFileError,
    build_network,
    load_weights_file,
    read_weights_file,
    save_weights_file,
)

N_FEATURES = 25
FEATURES = [f"f{i:02d}" for i in range(N_FEATURES)]
TOLERANCE = 1e-5

CONFIGS = {
    "mlp": ModelConfig(),
    "mlp_batchnorm_dropout": ModelConfig(batch_norm=True, dropout=0.3),
    "conv1d": ModelConfig(architecture="conv1d"),
    "conv1d_batchnorm": ModelConfig(architecture="conv1d", batch_norm=True, lookback=8, conv_kernel=5, conv_filters=8),
}

# Raw features as the pipeline sees them: offsets far from zero, spreads from tiny to large, and one
# price-like column (mean 150, moving by cents) where folding the scaler into the weights could lose digits.
_RNG = np.random.default_rng(7)
OFFSET = np.r_[_RNG.normal(0.0, 100.0, N_FEATURES - 1), 150.0]
SPREAD = np.r_[_RNG.uniform(0.01, 10.0, N_FEATURES - 1), 0.05]


def raw_samples(config: ModelConfig, n: int, seed: int) -> np.ndarray:
    shape = (n, config.lookback, N_FEATURES) if config.architecture == "conv1d" else (n, N_FEATURES)
    return OFFSET + SPREAD * np.random.default_rng(seed).normal(size=shape)


@dataclass
class Trained:
    config: ModelConfig
    model: object
    scaler: Scaler
    path: Path
    x: np.ndarray  # 1000 raw test samples, never seen in training

    def keras_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(self.scaler.transform(x), training=False), np.float64).reshape(-1)


def train(config: ModelConfig, directory: Path) -> Trained:
    """A network fitted for 2 epochs on random data; batch-norm parameters then set to clearly non-default
    values (2 short epochs barely move gamma and the moving statistics) so their folding is really tested."""
    x = raw_samples(config, 2048, seed=1)
    scaler = Scaler.fit(x.reshape(-1, N_FEATURES))
    xs = scaler.transform(x)
    y = (xs.reshape(len(xs), -1)[:, :5].sum(axis=1) + np.random.default_rng(2).normal(size=len(xs)) > 0)
    model = build_network(config, N_FEATURES)
    model.fit(xs, y.astype(np.float32), epochs=2, batch_size=256, verbose=0)
    if config.batch_norm:
        rng = np.random.default_rng(3)
        for i, width in enumerate(config.widths):
            layer = model.get_layer(f"bn_{i}")
            assert np.any(layer.get_weights()[2] != 0)  # the fit updated the moving mean
            layer.set_weights([rng.uniform(0.5, 2.0, width), rng.normal(0, 0.5, width),
                               rng.normal(0, 1.0, width), rng.uniform(0.2, 3.0, width)])
    path = save_weights_file(directory / "model_weights.h5", model, config, FEATURES, scaler)
    return Trained(config, model, scaler, path, raw_samples(config, 1000, seed=4))


@pytest.fixture(scope="module", params=list(CONFIGS))
def trained(request, tmp_path_factory) -> Trained:
    return train(CONFIGS[request.param], tmp_path_factory.mktemp(request.param))


@pytest.fixture(scope="module")
def mlp(tmp_path_factory) -> Trained:
    return train(CONFIGS["mlp"], tmp_path_factory.mktemp("mlp_only"))


@pytest.fixture(scope="module")
def fast_mlp(mlp) -> FastPredictor:
    return FastPredictor.from_weights_file(mlp.path)


# ---------------------------------------------------------------------------------------- equivalence
def test_from_weights_file_each_architecture_matches_keras_within_tolerance(trained):
    fast = FastPredictor.from_weights_file(trained.path)
    expected = trained.keras_proba(trained.x)
    assert expected.std() > 1e-3  # the model's output actually varies with the input
    proba = fast.predict_proba(trained.x)
    assert proba.dtype == np.float64 and proba.shape == (len(trained.x),)
    assert np.max(np.abs(proba - expected)) <= TOLERANCE
    one = np.array([fast.predict_one(row) for row in trained.x])
    assert np.max(np.abs(one - expected)) <= TOLERANCE


def test_from_weights_file_each_architecture_exposes_features_and_config(trained):
    fast = FastPredictor.from_weights_file(trained.path)
    assert fast.features == FEATURES
    assert fast.n_features == N_FEATURES
    assert fast.config == trained.config
    assert fast.sample_shape == trained.x.shape[1:]


def test_from_keras_each_architecture_matches_from_weights_file(trained):
    live = FastPredictor.from_keras(trained.model, trained.config, FEATURES, trained.scaler)
    loaded = FastPredictor.from_weights_file(trained.path)
    np.testing.assert_array_equal(live.predict_proba(trained.x), loaded.predict_proba(trained.x))


def test_load_weights_file_each_architecture_keras_predicts_identically(trained):
    model, wf = load_weights_file(trained.path)
    xs = trained.scaler.transform(trained.x)
    np.testing.assert_array_equal(np.asarray(model(xs, training=False)), np.asarray(trained.model(xs, training=False)))
    assert wf.features == FEATURES and wf.config == trained.config
    np.testing.assert_array_equal(wf.scaler.mean, trained.scaler.mean)
    np.testing.assert_array_equal(wf.scaler.scale, trained.scaler.scale)


def test_predict_proba_more_rows_than_one_chunk_matches_keras(mlp, fast_mlp):
    x = raw_samples(mlp.config, 2 * CHUNK_ROWS + 7, seed=5)
    assert np.max(np.abs(fast_mlp.predict_proba(x) - mlp.keras_proba(x))) <= TOLERANCE


def test_predict_one_list_and_float32_input_match_float64_row(fast_mlp, mlp):
    row = mlp.x[0]
    expected = fast_mlp.predict_one(row)
    assert fast_mlp.predict_one(list(row)) == expected
    assert fast_mlp.predict_one(row.astype(np.float32)) == pytest.approx(expected, abs=TOLERANCE)
    assert isinstance(expected, float)


def test_predict_proba_empty_batch_returns_empty(fast_mlp):
    assert fast_mlp.predict_proba(np.empty((0, N_FEATURES))).shape == (0,)


def test_predict_proba_nan_feature_gives_nan_for_that_row_only(fast_mlp, mlp):
    x = mlp.x[:4].copy()
    x[1, 3] = np.nan
    proba = fast_mlp.predict_proba(x)
    assert np.isnan(proba[1]) and np.all(np.isfinite(proba[[0, 2, 3]]))
    assert np.isnan(fast_mlp.predict_one(x[1]))


def test_predict_one_concurrent_threads_match_sequential(fast_mlp, mlp):
    rows = mlp.x[:400]
    expected = [fast_mlp.predict_one(r) for r in rows]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda chunk: [fast_mlp.predict_one(r) for r in chunk], np.array_split(rows, 8)))
    assert [p for chunk in results for p in chunk] == expected


def test_pickle_roundtrip_predicts_identically(fast_mlp, mlp):
    fast_mlp.predict_one(mlp.x[0])  # scratch buffers exist and must not travel
    clone = pickle.loads(pickle.dumps(fast_mlp))
    np.testing.assert_array_equal(clone.predict_proba(mlp.x), fast_mlp.predict_proba(mlp.x))
    assert clone.predict_one(mlp.x[0]) == fast_mlp.predict_one(mlp.x[0])


def test_constructor_shuffled_named_weights_maps_by_name(mlp, fast_mlp):
    wf = read_weights_file(mlp.path)
    order = np.random.default_rng(0).permutation(len(wf.weights))
    shuffled = FastPredictor(wf.config, wf.features, wf.scaler, [wf.weights[i] for i in order], [wf.names[i] for i in order])
    np.testing.assert_array_equal(shuffled.predict_proba(mlp.x), fast_mlp.predict_proba(mlp.x))


def test_constructor_unnamed_weights_maps_by_position(mlp, fast_mlp):
    wf = read_weights_file(mlp.path)
    unnamed = FastPredictor(wf.config, wf.features, wf.scaler, wf.weights, names=None)
    np.testing.assert_array_equal(unnamed.predict_proba(mlp.x), fast_mlp.predict_proba(mlp.x))


def test_keras_bn_epsilon_constant_matches_build_network():
    model = build_network(ModelConfig(batch_norm=True), 3)
    assert [model.get_layer(f"bn_{i}").epsilon for i in range(4)] == [KERAS_BN_EPSILON] * 4


def test_from_weights_file_fresh_process_does_not_import_tensorflow(mlp):
    code = (
        "import sys; from hft.model.fast import FastPredictor; import numpy as np\n"
        f"p = FastPredictor.from_weights_file({str(mlp.path)!r})\n"
        "p.predict_one(np.zeros(p.n_features))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=60)


# ---------------------------------------------------------------------------------------- errors
def test_from_weights_file_missing_file_raises_weights_file_error(tmp_path):
    with pytest.raises(WeightsFileError, match="not found"):
        FastPredictor.from_weights_file(tmp_path / "missing.h5")


def test_from_weights_file_random_bytes_raises_weights_file_error(tmp_path):
    path = tmp_path / "model_weights.h5"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(WeightsFileError, match="corrupt"):
        FastPredictor.from_weights_file(path)


def test_from_weights_file_foreign_h5_raises_weights_file_error(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("kernel", data=np.ones((25, 32)))
    with pytest.raises(WeightsFileError, match="not an hft weights file"):
        FastPredictor.from_weights_file(path)


def test_from_weights_file_config_not_matching_weights_raises_weights_file_error(mlp, tmp_path):
    path = tmp_path / "model_weights.h5"
    path.write_bytes(mlp.path.read_bytes())
    with h5py.File(path, "r+") as f:
        f.attrs["config"] = json.dumps(asdict(replace(mlp.config, widths=(16, 32, 64, 128))))
    with pytest.raises(WeightsFileError, match="dense_0/kernel has shape"):
        FastPredictor.from_weights_file(path)


def test_from_weights_file_missing_weight_array_raises_weights_file_error(mlp, tmp_path):
    path = tmp_path / "model_weights.h5"
    path.write_bytes(mlp.path.read_bytes())
    with h5py.File(path, "r+") as f:
        del f["weights"][sorted(f["weights"].keys())[-1]]
    with pytest.raises(WeightsFileError, match="weight arrays"):
        FastPredictor.from_weights_file(path)


def test_constructor_non_finite_weight_raises_weights_file_error(mlp):
    wf = read_weights_file(mlp.path)
    weights = [w.copy() for w in wf.weights]
    weights[2][0, 0] = np.nan
    with pytest.raises(WeightsFileError, match="non-finite"):
        FastPredictor(wf.config, wf.features, wf.scaler, weights, wf.names)


@pytest.mark.parametrize("shape", [(10, N_FEATURES - 1), (10, N_FEATURES + 1), (N_FEATURES,), (2, 3, N_FEATURES)])
def test_predict_proba_mlp_wrong_shape_raises_value_error(fast_mlp, shape):
    with pytest.raises(ValueError, match=rf"x must have shape \(n, {N_FEATURES}\).*got \({shape[0]}"):
        fast_mlp.predict_proba(np.zeros(shape))


@pytest.mark.parametrize("shape", [(N_FEATURES - 1,), (1, N_FEATURES), ()])
def test_predict_one_mlp_wrong_shape_raises_value_error(fast_mlp, shape):
    with pytest.raises(ValueError, match=rf"row must have shape \({N_FEATURES},\)"):
        fast_mlp.predict_one(np.zeros(shape))


def test_predict_proba_non_numeric_input_raises_value_error(fast_mlp):
    with pytest.raises(ValueError, match="real numbers"):
        fast_mlp.predict_proba(np.full((2, N_FEATURES), "x"))


def test_predict_conv1d_wrong_lookback_raises_value_error():
    config = CONFIGS["conv1d"]
    n = config.lookback
    weights = [np.zeros(shape) for _, _, shape in _expected_weights(config, N_FEATURES)]
    fast = FastPredictor(config, FEATURES, Scaler(np.zeros(N_FEATURES), np.ones(N_FEATURES)), weights)
    assert fast.predict_proba(np.zeros((3, n, N_FEATURES))).tolist() == [0.5, 0.5, 0.5]
    with pytest.raises(ValueError, match=rf"x must have shape \(n, {n}, {N_FEATURES}\)"):
        fast.predict_proba(np.zeros((3, n - 1, N_FEATURES)))
    with pytest.raises(ValueError, match=rf"row must have shape \({n}, {N_FEATURES}\)"):
        fast.predict_one(np.zeros(N_FEATURES))

