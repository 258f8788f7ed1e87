"""The MLflow story of a version: the evaluate step's own report, the gate's verdict, descriptions, and a
champion alias moved by hand (the MLflow UI) detected, recorded and exposed as a metric."""

from __future__ import annotations

import dataclasses
import json

import mlflow
import pytest
from model_fixtures import FAST

from hft.model import registry
from hft.model.dataset import prepare
from hft.model.pipeline import judge
from hft.model.report import evaluation_report, gate_status
from hft.model.training import train


@pytest.fixture(scope="module")
def two_versions(predictable_table, tmp_path_factory):
    frame, features = prepare(predictable_table)
    small = frame[frame["date"] <= sorted(frame["date"].unique())[14]]
    cfg = dataclasses.replace(FAST, epochs=2, bootstrap=50)
    uri = f"sqlite:///{tmp_path_factory.mktemp('report') / 'mlflow.db'}"
    regs = [registry.log_training(train(small, features, dataclasses.replace(cfg, seed=s)), {}, uri) for s in (0, 7)]
    return uri, [r.version for r in regs]


def test_evaluate_rescores_the_registered_weights_and_logs_its_report(two_versions):
    uri, (v1, _) = two_versions
    report = evaluation_report(v1, uri)
    c = registry.client(uri)
    training = registry.evaluation_of(c, v1)
    assert report["reproduced"] and report["max_abs_diff"] <= 1e-4
    assert report["overall"]["rows"] == training["n"]
    assert report["overall"]["auc"] == pytest.approx(training["scores"]["model"]["auc"]["value"], abs=1e-4)
    assert sum(m["rows"] for m in report["by_ticker"].values()) == report["overall"]["rows"]
    assert sum(m["rows"] for m in report["by_session"].values()) == report["overall"]["rows"]
    mv = c.get_model_version(registry.MODEL_NAME, v1)
    names = {a.path for a in c.list_artifacts(mv.run_id, "evaluation_report")}
    assert names == {f"evaluation_report/{n}" for n in ("report.json", "report.md", "calibration_by_ticker.png")}
    logged = json.loads(mlflow.artifacts.load_text(f"runs:/{mv.run_id}/evaluation_report/report.json"))
    assert logged["by_ticker"] == report["by_ticker"]
    assert float(mv.tags["evaluated_auc"]) == pytest.approx(report["overall"]["auc"], abs=1e-6)
    assert "Re-scored with the registered weights" in mv.description and "Gate: not run yet." in mv.description


def test_verdicts_descriptions_and_a_champion_moved_by_hand(two_versions, monkeypatch):
    from hft.observability.metrics import STREAM_MODEL_GATE_APPROVED
    from hft.streaming.champion import ChampionModel

    uri, (v1, v2) = two_versions
    monkeypatch.setenv("HFT_PROMOTION_MARGIN", "0.5")  # no challenger clears it: v2 will be rejected
    c = registry.client(uri)
    # v1: judged (the first model's verdict) and made champion by hft
    decision = judge(v1, tracking_uri=uri)
    registry.promote(v1, reason="test", tracking_uri=uri, by="gate")
    assert gate_status(c, v1) == ("approved" if decision.promote else "rejected")
    assert f"Gate: {gate_status(c, v1).upper()}" in c.get_model_version(registry.MODEL_NAME, v1).description
    assert registry.audit_champion(uri) is None  # nothing moved outside hft
    # v2: the gate rejects it against v1
    rejected = judge(v2, tracking_uri=uri)
    assert not rejected.promote and gate_status(c, v2) == "rejected"
    assert "not above the margin 0.5000" in c.get_model_version(registry.MODEL_NAME, v2).tags["gate_reason"]
    # ...and someone moves the alias to it by hand, as the MLflow UI does
    serving = ChampionModel(uri, refresh_s=0.0)
    assert serving()[1] == v1
    c.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, v2)
    assert serving()[1] == v2  # the stream reloads it...
    assert serving.gate_status == "rejected" and STREAM_MODEL_GATE_APPROVED._value.get() == 0.0  # ...and says so
    last = registry.champion_history(c)[-1]
    assert last["version"] == v2 and last["by"] == registry.OUTSIDE and last["gate"] == "rejected"
    assert registry.audit_champion(uri) is None  # recorded once
    description = c.get_registered_model(registry.MODEL_NAME).description
    assert f"Champion: version {v2}, gate rejected" in description and registry.OUTSIDE in description
    # back through hft: the metric follows the served version's verdict
    registry.promote(v1, reason="back", tracking_uri=uri, by="gate")
    serving()
    assert STREAM_MODEL_GATE_APPROVED._value.get() == (1.0 if gate_status(c, v1) == "approved" else 0.0)


def test_a_new_champion_the_stream_cannot_serve_is_refused_and_the_loaded_one_kept(two_versions, caplog):
    """ChampionModel's accept (the streaming jobs': a model reading features the job does not compute): the first
    champion refused is an error at start; a later one is refused once, logged, and the loaded version serves on."""
    from hft.errors import UserError
    from hft.streaming.champion import ChampionModel

    uri, (v1, v2) = two_versions
    c = registry.client(uri)
    c.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, v1)
    checked = []

    def accept(predictor) -> None:
        checked.append(predictor)
        if len(checked) > 1:
            raise UserError("the champion reads sec_ret_1, which this job does not compute")

    serving = ChampionModel(uri, refresh_s=0.0, accept=accept)
    assert serving()[1] == v1
    try:
        c.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, v2)
        assert serving()[1] == v1 and serving()[1] == v1  # v2 refused, and not loaded again
        assert len(checked) == 2
        assert f"cannot serve {registry.MODEL_NAME} version {v2}, serving version {v1}" in caplog.text
        with pytest.raises(UserError, match="sec_ret_1"):  # a job starting now has nothing it can serve
            ChampionModel(uri, accept=lambda predictor: accept(predictor))()
        # ...unless it has a fallback: a tasks-engine worker started now serves the version its driver accepted
        calls: list = []

        def refuse_the_champion(predictor) -> None:
            calls.append(predictor)
            if len(calls) == 1:
                raise UserError("the champion reads sec_ret_1, which this job does not compute")

        worker = ChampionModel(uri, refresh_s=0.0, accept=refuse_the_champion, fallback=v1)
        assert worker()[1] == v1 and worker()[1] == v1 and len(calls) == 2
    finally:
        c.set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, v1)
