"""MLflow tracking and registry against a real sqlite store: register, gate, promote, roll back,
and nothing half-written when something fails."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest

from hft.model import registry
from hft.model.dataset import prepare
from hft.model.fast import FastPredictor
from hft.model.training import train

from model_fixtures import FAST


@pytest.fixture(scope="module")
def trained(predictable_table):
    frame, features = prepare(predictable_table)
    small = frame[frame["date"] <= sorted(frame["date"].unique())[14]]
    cfg = dataclasses.replace(FAST, epochs=2, bootstrap=50)
    return train(small, features, cfg), train(small, features, dataclasses.replace(cfg, seed=7))


@pytest.fixture
def uri(tmp_path):
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_first_model_verdict_requires_naive_baselines_and_not_worse_than_logistic():
    def ev(beats_majority, beats_sign, lr_high):
        return {"comparisons": [
            {"baseline": "majority_class", "beats": beats_majority, "auc_diff": {"high": 0.1}},
            {"baseline": "last_return_sign", "beats": beats_sign, "auc_diff": {"high": 0.1}},
            {"baseline": "logistic_regression", "beats": False, "auc_diff": {"high": lr_high}},
        ]}

    assert registry.first_model_verdict(ev(True, True, 0.01))[0]
    ok, why = registry.first_model_verdict(ev(True, False, 0.01))
    assert not ok and "last_return_sign" in why
    ok, why = registry.first_model_verdict(ev(True, True, -0.01))
    assert not ok and "significantly worse than logistic_regression" in why


def test_log_training_registers_challenger_with_artifacts(trained, uri):
    first, _ = trained
    reg = registry.log_training(first, {"rows": 1}, uri)
    rows = registry.list_versions(uri)
    assert [r["version"] for r in rows] == [reg.version] and rows[0]["aliases"] == ["challenger"]
    client = registry.client(uri)
    names = {a.path for a in client.list_artifacts(reg.run_id)}
    assert {"model_weights.h5", "features.json", "scaler.json", "evaluation.json", "calibration.png",
            "holdout.parquet", "model"} <= names
    run = client.get_run(reg.run_id)
    assert run.data.params["widths"] == "16,32,64,128"
    assert "fold_auc" in run.data.metrics and "model_auc_ci_low" in run.data.metrics
    # The registered weights rebuild a predictor that reproduces the logged holdout probabilities.
    fast = FastPredictor.from_weights_file(registry.weights_path(client, reg.version))
    hold = registry.holdout_of(client, reg.version)
    np.testing.assert_allclose(fast.predict_proba(hold[fast.features].to_numpy()), hold["model_proba"], atol=1e-5)


def test_gate_promote_rollback_are_idempotent(trained, uri):
    first, second = trained
    v1 = registry.log_training(first, {}, uri).version
    assert registry.promote(v1, "test", uri) is True
    assert registry.promote(v1, "test", uri) is False  # re-running changes nothing
    assert registry.gate(v1, 0.0, uri).reason.endswith("already champion")
    v2 = registry.log_training(second, {}, uri).version
    lenient, strict = registry.gate(v2, -1.0, uri), registry.gate(v2, 1.0, uri)
    assert lenient.promote and not strict.promote
    assert f"champion v{v1}" in strict.reason and "same" in strict.reason
    registry.promote(v2, lenient.reason, uri)
    versions = {r["version"]: r["aliases"] for r in registry.list_versions(uri)}
    assert versions[v2] == ["challenger", "champion"] and versions[v1] == []
    assert registry.rollback(uri) == v1
    assert "champion" in {r["version"]: r["aliases"] for r in registry.list_versions(uri)}[v1]


def test_rollback_without_history_raises(uri):
    with pytest.raises(registry.RegistryError, match="nothing to roll back"):
        registry.rollback(uri)


def test_unreachable_tracking_server_fails_fast_with_clear_error():
    with pytest.raises(registry.RegistryError, match="unreachable"):
        registry.check_reachable("http://127.0.0.1:9", timeout_s=1)


def test_failed_registration_leaves_no_version_and_marks_run_failed(trained, uri, monkeypatch):
    first, _ = trained

    def refuse(*args, **kwargs):
        raise mlflow.exceptions.MlflowException("registry is read-only")

    monkeypatch.setattr(mlflow, "register_model", refuse)
    with pytest.raises(registry.RegistryError, match="read-only"):
        registry.log_training(first, {}, uri)
    assert registry.list_versions(uri) == []
    client = registry.client(uri)
    runs = client.search_runs([client.get_experiment_by_name(registry.EXPERIMENT).experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
