"""``hft train``, ``hft model``: the direction model through MLflow's registry and the promotion gate."""

from __future__ import annotations

import argparse

from hft.cli._common import EXIT_FAILED, EXIT_OK, arg_tickers, out
from hft.config import Settings, join_uri
from hft.errors import UserError


def model_config(overrides: list[str] | None):
    """``ModelConfig.from_env()`` with ``NAME=VALUE`` overrides (``--set``)."""
    from hft.model.config import config_with

    try:
        return config_with(overrides)
    except ValueError as exc:
        raise UserError(str(exc)) from None


def report_training(outcome) -> None:
    out(outcome.evaluation_table)
    if outcome.understanding:
        out(outcome.understanding)
    if outcome.economics:
        out(outcome.economics)
    out(f"registered hft-direction version {outcome.version} (run {outcome.run_id}) as challenger")
    out(f"gate: {outcome.gate_reason} -> {'promoted to champion' if outcome.promoted else 'champion unchanged'}")


def list_models(tracking_uri: str | None = None) -> None:
    from hft.model import registry

    rows = registry.list_versions(tracking_uri)
    if not rows:
        out("no registered versions of hft-direction")
    for r in rows:
        aliases = ",".join(r["aliases"]) or "-"
        out(f"v{r['version']:<4} {aliases:<22} holdout_auc={r['holdout_auc']} "
            f"beats_all_baselines={r['beats_all_baselines']} run={r['run_id']} {r['created']}")


def cmd_train(args: argparse.Namespace, settings: Settings) -> int:
    from hft.model.pipeline import train_and_register

    features = args.features or join_uri(args.lake or settings.lake_root, "features")
    if args.warm_start and args.set:
        raise UserError("--warm-start trains the champion with its own settings: drop --set")
    if not args.warm_start and (args.sessions is not None or args.epochs is not None):
        raise UserError("--sessions and --epochs are for --warm-start (a full training takes --set epochs=N)")
    outcome = train_and_register(
        features, model_config(args.set), interval=args.interval, tracking_uri=args.tracking_uri,
        promote_if_better=not args.no_promote, margin=args.margin, tickers=args.tickers,
        warm_start=(args.sessions, args.epochs) if args.warm_start else None,
    )
    report_training(outcome)
    return EXIT_OK


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from hft.model import registry
    from hft.model.pipeline import judge

    if args.action == "list":
        list_models(args.tracking_uri)
    elif args.action == "promote":
        if not args.version:
            raise UserError("model promote needs --version N")
        if not args.force:
            margin = settings.promotion_margin if args.margin is None else args.margin
            decision = judge(args.version, margin, args.tracking_uri)
            if not decision.promote:
                out(f"gate refused version {args.version}: {decision.reason} (use --force to override)")
                return EXIT_FAILED
            reason, by = decision.reason, "gate (hft model promote)"
        else:
            reason, by = "forced by operator", "operator (hft model promote --force)"
        changed = registry.promote(args.version, reason=reason, tracking_uri=args.tracking_uri, by=by)
        out(f"champion is version {args.version}" + ("" if changed else " (unchanged)"))
    elif args.action == "rollback":
        out(f"champion rolled back to version {registry.rollback(args.tracking_uri)}")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("train", help="train, evaluate, register (challenger) and gate the direction model")
    p.add_argument("--features", help="feature table root (default <lake>/features)")
    p.add_argument("--lake", help="lake root (default HFT_LAKE_ROOT)")
    p.add_argument("--interval", default="1m", choices=["1m", "5m"])
    p.add_argument("--tickers", type=arg_tickers)
    p.add_argument("--set", action="append", metavar="NAME=VALUE", help="model setting, e.g. epochs=10 (repeatable)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default MLFLOW_TRACKING_URI or sqlite under HFT_HOME)")
    p.add_argument("--margin", type=float, default=None,
                   help="AUC margin the challenger's paired bootstrap interval against the champion must lie above "
                        "(default HFT_PROMOTION_MARGIN, 0.001)")
    p.add_argument("--no-promote", action="store_true", help="register as challenger only, skip the gate")
    p.add_argument("--warm-start", action="store_true",
                   help="daily retraining: train the champion further on the newest sessions (the last one held out) "
                        "instead of training from scratch; same registry and gate")
    p.add_argument("--sessions", type=int, default=None, help="with --warm-start: newest sessions to use (default 10)")
    p.add_argument("--epochs", type=int, default=None, help="with --warm-start: epochs on them (default 3)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("model", help="list, promote or roll back registered models")
    p.add_argument("action", choices=["list", "promote", "rollback"])
    p.add_argument("--version", help="model version (promote)")
    p.add_argument("--force", action="store_true", help="promote without the gate")
    p.add_argument("--margin", type=float, default=None, help="as for train (default HFT_PROMOTION_MARGIN)")
    p.add_argument("--tracking-uri", help="MLflow tracking URI")
    p.set_defaults(func=cmd_model)
