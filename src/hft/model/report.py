"""What the MLflow UI shows about a model version: its evaluation report, the gate's verdict, the descriptions.

* :func:`evaluation_report` is the ``evaluate`` step: it re-scores the version's holdout with the *registered*
  weights (``model_weights.h5``, the file the streaming job serves), checks that they reproduce the training
  run's probabilities, breaks the metrics down by ticker and by session, and logs the report
  (``evaluation_report/report.json``, ``report.md``, ``calibration_by_ticker.png``) to the version's run.
* :func:`record_verdict` writes the gate's verdict on the version (tags ``gate_verdict``, ``gate_reason``)
  and into its description, and :func:`describe_model` keeps the registered model's description (what it
  predicts, the champion, the promotion history) true. The UI page then tells the story without opening runs.
"""

from __future__ import annotations

import json
import logging
import tempfile
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from hft.model.evaluation import METRICS, calibration_curve, plot_calibration
from hft.model.registry import (
    CHAMPION,
    MODEL_NAME,
    RegistryError,
    alias_version,
    champion_history,
    client,
    evaluation_of,
    holdout_of,
    weights_path,
)

log = logging.getLogger(__name__)

#: The registered weights must reproduce the training run's holdout probabilities within this.
REPRODUCE_TOLERANCE = 1e-4
APPROVED, REJECTED = "approved", "rejected"


def _metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    out = {"rows": int(len(y)), "up_rate": float(np.mean(y)) if len(y) else float("nan")}
    out.update({name: float(fn(y, p)) for name, fn in METRICS.items()})
    return out


def _by(frame: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    return {str(key): _metrics(g["label"].to_numpy(), g["p"].to_numpy()) for key, g in frame.groupby(column)}


def _markdown(report: dict) -> str:
    o = report["overall"]
    lines = [
        f"# Evaluation of {MODEL_NAME} version {report['version']}",
        "",
        f"Holdout re-scored with the registered `model_weights.h5`: {o['rows']} rows, up-rate {o['up_rate']:.3f}.",
        f"Reproduces the training run's probabilities: **{'yes' if report['reproduced'] else 'NO'}** "
        f"(largest difference {report['max_abs_diff']:.2e}, tolerance {REPRODUCE_TOLERANCE:.0e}).",
        "",
        "| | rows | up-rate | AUC | accuracy | log loss | Brier |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, m: dict) -> str:
        return (f"| {name} | {m['rows']} | {m['up_rate']:.3f} | {m['auc']:.4f} | {m['accuracy']:.4f} | "
                f"{m['log_loss']:.4f} | {m['brier']:.4f} |")

    lines.append(row("**all**", o))
    lines += [row(t, m) for t, m in report["by_ticker"].items()]
    lines += ["", "Against the baselines fitted on the training rows (95% bootstrap interval of the AUC difference):", ""]
    for c in report["comparisons"]:
        d = c["auc_diff"]
        lines.append(f"- {'beats' if c['beats'] else 'does **not** beat'} {c['baseline']}: "
                     f"{d['value']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
    lines += ["", "By session:", "", "| session | rows | AUC | accuracy |", "|---|---:|---:|---:|"]
    lines += [f"| {d} | {m['rows']} | {m['auc']:.4f} | {m['accuracy']:.4f} |" for d, m in report["by_session"].items()]
    return "\n".join(lines) + "\n"


def evaluation_report(version: str, tracking_uri: str | None = None) -> dict:
    """Re-score ``version``'s holdout with its registered weights and log the report to its run.

    Returns the report (``overall``, ``by_ticker``, ``by_session``, ``comparisons``, ``reproduced``, ...).
    Raises RegistryError when the registered weights do not reproduce the training probabilities (the
    artifact the stream would serve is not the model that was evaluated).
    """
    from hft.model.fast import FastPredictor
    from hft.model.training import model_inputs

    c = client(tracking_uri)
    mv = c.get_model_version(MODEL_NAME, str(version))
    hold = holdout_of(c, str(version))
    with tempfile.TemporaryDirectory() as tmp:
        predictor = FastPredictor.from_weights_file(weights_path(c, str(version), tmp))
    hold["date"] = hold["date"].astype(str)
    x, rows = model_inputs(hold, predictor.features, predictor.config, scaler=None)
    scored = hold.iloc[rows].reset_index(drop=True).assign(p=predictor.predict_proba(x))
    max_diff = float(np.max(np.abs(scored["p"].to_numpy() - scored["model_proba"].to_numpy()))) if len(scored) else 0.0
    training = evaluation_of(c, str(version))
    report = {
        "version": str(version),
        "run_id": mv.run_id,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "reproduced": max_diff <= REPRODUCE_TOLERANCE,
        "max_abs_diff": max_diff,
        "overall": _metrics(scored["label"].to_numpy(), scored["p"].to_numpy()),
        "by_ticker": _by(scored, "ticker"),
        "by_session": _by(scored, "date"),
        "comparisons": training["comparisons"],
        "beats_all_baselines": bool(training["beats_all_baselines"]),
    }
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
        (out / "report.md").write_text(_markdown(report))
        curves = {str(t): calibration_curve(g["label"].to_numpy(), g["p"].to_numpy()) for t, g in scored.groupby("ticker")}
        plot_calibration(out / "calibration_by_ticker.png", curves, "holdout calibration by ticker (registered weights)")
        c.log_artifacts(mv.run_id, tmp, "evaluation_report")
    c.set_model_version_tag(MODEL_NAME, str(version), "evaluated_auc", f"{report['overall']['auc']:.6f}")
    c.set_model_version_tag(MODEL_NAME, str(version), "reproduces_training", str(report["reproduced"]))
    _describe_version(c, str(version))
    log.info("evaluation report of version %s: AUC %.4f on %d rows, reproduced=%s", version,
             report["overall"]["auc"], report["overall"]["rows"], report["reproduced"],
             extra={"hft": {"model_version": str(version), "evaluated_auc": report["overall"]["auc"]}})
    if not report["reproduced"]:
        raise RegistryError(f"version {version}: the registered weights do not reproduce the training run's "
                            f"holdout probabilities (largest difference {max_diff:.2e} > {REPRODUCE_TOLERANCE:.0e})")
    return report


def record_verdict(version: str, approved: bool, reason: str, tracking_uri: str | None = None) -> None:
    """The gate's verdict on ``version``: tags ``gate_verdict``/``gate_reason``/``gate_at`` and its description."""
    c = client(tracking_uri)
    verdict = APPROVED if approved else REJECTED
    c.set_model_version_tag(MODEL_NAME, str(version), "gate_verdict", verdict)
    c.set_model_version_tag(MODEL_NAME, str(version), "gate_reason", reason[:4000])
    c.set_model_version_tag(MODEL_NAME, str(version), "gate_at", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    _describe_version(c, str(version))
    describe_model(tracking_uri)


def gate_status(c, version: str) -> str:
    """``approved``, ``rejected`` or ``unknown`` (the gate never ran on it) for ``version``."""
    tags = c.get_model_version(MODEL_NAME, str(version)).tags or {}
    return tags.get("gate_verdict", "unknown")


def _describe_version(c, version: str) -> None:
    mv = c.get_model_version(MODEL_NAME, version)
    tags = mv.tags or {}
    parts = []
    try:
        ev = evaluation_of(c, version)
        m = ev["scores"]["model"]
        parts.append(f"Holdout ({ev['n']} rows, up-rate {ev['up_rate']:.3f}): AUC {m['auc']['value']:.4f} "
                     f"[{m['auc']['low']:.4f}, {m['auc']['high']:.4f}], accuracy {m['accuracy']['value']:.4f}, "
                     f"log loss {m['log_loss']['value']:.4f}, Brier {m['brier']['value']:.4f}. "
                     f"{'Beats' if ev['beats_all_baselines'] else 'Does not beat'} all baselines.")
    except Exception as e:  # noqa: BLE001 - a version without an evaluation still gets the rest
        parts.append(f"No holdout evaluation found ({type(e).__name__}).")
    if "evaluated_auc" in tags:
        parts.append(f"Re-scored with the registered weights: AUC {float(tags['evaluated_auc']):.4f}, "
                     f"reproduces training: {tags.get('reproduces_training')} (report: evaluation_report/report.md).")
    verdict = tags.get("gate_verdict")
    parts.append(f"Gate: {verdict.upper()} - {tags.get('gate_reason', '')}" if verdict else "Gate: not run yet.")
    c.update_model_version(MODEL_NAME, version, description="\n\n".join(parts))


def describe_model(tracking_uri: str | None = None) -> None:
    """The registered model's description: what it predicts, the champion and its gate status, the history."""
    c = client(tracking_uri)
    champion = alias_version(c, CHAMPION)
    lines = ["Direction of the price over the next 5 minutes (P(up)) from volatility features of 1-minute bars. "
             "Trained by the model_training DAG; promoted only by its gate (aliases champion/challenger)."]
    if champion is None:
        lines.append("No champion yet.")
    else:
        tags = c.get_model_version(MODEL_NAME, champion).tags or {}
        lines.append(f"Champion: version {champion}, gate {gate_status(c, champion)}, holdout AUC "
                     f"{tags.get('holdout_auc', '?')}.")
    history = champion_history(c)[-5:]
    if history:
        lines.append("Recent promotions: " + "; ".join(
            f"v{h['version']} at {h['at'][:19]} by {h.get('by', 'gate')}"
            + (f" (gate {h['gate']})" if h.get("gate") else "") for h in reversed(history)))
    c.update_registered_model(MODEL_NAME, description="\n\n".join(lines))
