"""Serving the registered model the MLflow way: the pyfunc in-process for both architectures, and a real
``mlflow models serve -m models:/hft-direction@champion`` answering with the streaming job's probabilities."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
from model_fixtures import FAST

from hft.model import registry
from hft.model.dataset import prepare
from hft.model.serving import input_columns, request_frame
from hft.model.training import train
from hft.streaming.champion import ChampionModel
from ports import free_port


@pytest.fixture(scope="module")
def frame_features(predictable_table):
    frame, features = prepare(predictable_table)
    return frame[frame["date"] <= sorted(frame["date"].unique())[14]], features


def _rows(frame, predictor, n):
    day = frame[(frame["date"] == frame["date"].max()) & (frame["ticker"] == "AAA")]
    return request_frame(day.head(n), predictor)


@pytest.mark.parametrize("architecture", ["mlp", "conv1d"])
def test_registered_pyfunc_scores_like_the_streaming_predictor(frame_features, tmp_path, architecture):
    frame, features = frame_features
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = dataclasses.replace(FAST, epochs=1, folds=1, bootstrap=20, architecture=architecture, lookback=4)
    version = registry.log_training(train(frame, features, cfg), {}, uri).version
    registry.promote(version, "test", uri)
    predictor, served = ChampionModel(uri)()
    assert served == version
    # the served champion's drift report, exported for the HftModelDrift/HftModelRecentAuc alerts
    from prometheus_client import REGISTRY

    metrics = registry.run_metrics(registry.client(uri), version)
    assert REGISTRY.get_sample_value("hft_model_recent_auc", {"stat": "high"}) == metrics["recent_auc_ci_high"]
    assert REGISTRY.get_sample_value("hft_model_feature_psi", {"feature": features[0]}) == metrics[f"psi_{features[0]}"]
    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(f"models:/{registry.MODEL_NAME}@champion")
    assert model.metadata.get_input_schema().input_names() == input_columns(predictor)
    rows = _rows(frame, predictor, 40)
    got = model.predict(rows)["probability"].to_numpy()
    if architecture == "mlp":
        want = predictor.predict_proba(rows[features].to_numpy(np.float64))
        np.testing.assert_allclose(got, want, atol=1e-9)
    else:  # the first lookback-1 bars of the session have no window yet
        assert np.isnan(got[: cfg.lookback - 1]).all() and np.isfinite(got[cfg.lookback - 1:]).all()
        assert ((got[cfg.lookback - 1:] > 0) & (got[cfg.lookback - 1:] < 1)).all()


@pytest.mark.integration
def test_mlflow_models_serve_answers_with_the_streaming_jobs_probabilities(frame_features, tmp_path):
    frame, features = frame_features
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = dataclasses.replace(FAST, epochs=1, folds=1, bootstrap=20)
    version = registry.log_training(train(frame, features, cfg), {}, uri).version
    registry.promote(version, "test", uri)
    predictor, _ = ChampionModel(uri)()
    rows = _rows(frame, predictor, 25)
    port = free_port()
    mlflow_bin = str(Path(sys.executable).with_name("mlflow"))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    server = subprocess.Popen([mlflow_bin, "models", "serve", "-m", f"models:/{registry.MODEL_NAME}@champion",
                               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2)
                break
            except OSError:
                assert server.poll() is None, server.stderr.read().decode()[-3000:]
                assert time.monotonic() < deadline, "mlflow models serve did not answer /ping"
                time.sleep(1)
        body = json.dumps({"dataframe_split": json.loads(rows.to_json(orient="split", index=False))}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(req, timeout=30).read())
        got = np.array([p["probability"] for p in answer["predictions"]])
        want = predictor.predict_proba(rows[features].to_numpy(np.float64))  # the stream's predictor, same rows
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert len(set(np.round(got, 6))) > 1  # real scores, not one constant
    finally:
        os.killpg(server.pid, 15)
        server.wait(30)
