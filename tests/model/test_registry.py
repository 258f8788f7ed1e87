"""MLflow tracking and registry against a real sqlite store: register, gate, promote, roll back,
and nothing half-written when something fails."""

from __future__ import annotations

import dataclasses

import mlflow
import numpy as np
import pytest
from model_fixtures import FAST

from hft.model import registry
from hft.model.dataset import prepare
from hft.model.fast import FastPredictor
from hft.model.training import train


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


def _naive(beats: bool = True) -> dict:
    return {"comparisons": [{"baseline": b, "beats": beats, "auc_diff": {"high": 0.1}} for b in registry.NAIVE_BASELINES]}


def _scores(n: int, signal: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities whose AUC rises with ``signal`` (0: chance)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    return y, 1 / (1 + np.exp(-(signal * (2 * y - 1) + rng.normal(size=n))))


def test_challenger_verdict_promotes_only_when_the_paired_interval_clears_the_margin():
    from hft.model.evaluation import auc

    y, strong = _scores(4000, 0.6, seed=1)
    rng = np.random.default_rng(2)
    weak = 1 / (1 + np.exp(-(0.2 * (2 * y - 1) + rng.normal(size=len(y)))))
    gap = auc(y, strong) - auc(y, weak)
    assert 0.1 < gap < 0.3  # real AUCs, a clear difference
    ok, why = registry.challenger_verdict(y, strong, weak, _naive(), 0.001, "1", resamples=300)
    assert ok and "above the margin" in why and "same 4000 holdout rows" in why
    # the same difference does not clear a margin above its interval's lower end
    ok, why = registry.challenger_verdict(y, strong, weak, _naive(), gap, "1", resamples=300)
    assert not ok and "not above the margin" in why
    # a challenger better by chance only: point difference > margin, interval straddles it
    noise = 1 / (1 + np.exp(-(0.2 * (2 * y - 1) + np.random.default_rng(3).normal(size=len(y)))))
    assert auc(y, noise) - auc(y, weak) > 0.001  # the point difference alone would promote it
    ok, why = registry.challenger_verdict(y, noise, weak, _naive(), 0.001, "1", resamples=300)
    assert not ok and "not above" in why
    # better than the champion but no longer beating the naive baselines
    ok, why = registry.challenger_verdict(y, strong, weak, _naive(beats=False), 0.001, "1", resamples=300)
    assert not ok and "does not beat majority_class" in why


def test_training_refuses_an_embargo_shorter_than_the_label_horizon(predictable_table):
    from hft.model.dataset import DatasetError

    frame, features = prepare(predictable_table)
    with pytest.raises(DatasetError, match="shorter than the labels' horizon of 15 minutes"):
        train(frame, features, dataclasses.replace(FAST, embargo_minutes=5), horizon_minutes=15)
    with pytest.raises(DatasetError, match="bootstrap_block_minutes=10 is shorter than the labels' horizon of 15"):
        train(frame, features, dataclasses.replace(FAST, embargo_minutes=15, bootstrap_block_minutes=10),
              horizon_minutes=15)


def test_log_training_registers_challenger_with_artifacts(trained, uri):
    first, _ = trained
    reg = registry.log_training(first, {"rows": 1}, uri)
    rows = registry.list_versions(uri)
    assert [r["version"] for r in rows] == [reg.version] and rows[0]["aliases"] == ["challenger"]
    client = registry.client(uri)
    names = {a.path for a in client.list_artifacts(reg.run_id)}
    assert {"model_weights.h5", "features.json", "scaler.json", "evaluation.json", "calibration.png",
            "holdout.parquet", "model", "understanding.json", "importance.png", "economics.json", "economics.txt",
            "economics.png"} <= names
    run = client.get_run(reg.run_id)
    m = run.data.metrics
    judged = {f for f, v in first.drift.psi.items() if np.isfinite(v)}  # the overnight gap: too few sessions here
    assert {f"importance_{f}" for f in first.features} <= set(m) and {f"psi_{f}" for f in judged} <= set(m)
    assert judged == set(first.features) - {"overnight_gap"} and "psi_overnight_gap" not in m
    assert m["recent_auc"] == first.drift.recent_auc.value and m["psi_max"] == first.drift.psi_max
    assert m["gradient_boosted_trees_auc"] == first.evaluation.scores["gradient_boosted_trees"]["auc"].value
    econ = first.economics.model
    assert m["econ_survives_costs"] == float(econ.survives_costs) and m["econ_model_net_pnl"] == econ.net_pnl
    assert m["econ_logistic_regression_daily_pnl"] == first.economics.results["logistic_regression"].daily_pnl.value
    assert run.data.params["widths"] == "16,32,64,128" and run.data.params["label_horizon_minutes"] == "5"
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
    decision = registry.gate(v2, 0.001, uri, resamples=200)
    assert f"champion v{v1}" in decision.reason and "same" in decision.reason and "paired bootstrap" in decision.reason
    assert registry.gate(v2, 0.001, uri, resamples=200) == decision  # re-running decides the same
    registry.promote(v2, "operator", uri)
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
