"""``hft backup``, ``hft restore``: the system's state at one point in time (:mod:`hft.backup`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from hft.cli._common import EXIT_OK, out, stack_config
from hft.config import Settings
from hft.errors import UserError


def _journal(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.journal) if args.journal else settings.home / "executor"


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from hft.backup import backup
    from hft.model.registry import default_tracking_uri

    config = stack_config()
    manifest = backup(args.to, args.redis or config.redis_url, _journal(args, settings), default_tracking_uri(),
                      settings.lake_root)
    size = sum(f["bytes"] for f in manifest["files"].values())
    missing = [name for name, part in manifest["parts"].items() if part.get("missing")]
    out(f"backup in {args.to}: {len(manifest['files'])} files, {size / 1e6:.1f} MB, "
        f"{manifest['finished'] - manifest['started']:.1f} s"
        + (f" (nothing to copy for: {', '.join(missing)})" if missing else ""))
    return EXIT_OK


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from hft.backup import restore
    from hft.model.registry import default_tracking_uri
    from hft.stack import status

    config = stack_config()
    running = [name for name, st in status(config).items() if st.running and name.startswith(("redis", "sentinel"))]
    if running:
        raise UserError(f"stop Redis first (`hft stack down`): {', '.join(running)} running; the restored snapshot "
                        "is loaded when it starts")
    manifest = restore(args.source, settings.home, config.run_dir / "redis", _journal(args, settings),
                       default_tracking_uri(), settings.lake_root, force=args.force)
    out(f"restored {len(manifest['files'])} files from {args.source}; `hft stack up` loads Redis's snapshot, "
        "`hft execute` resumes from the journal")
    return EXIT_OK


def register(sub) -> None:
    p = sub.add_parser("backup", help="back up the lake, MLflow, Redis and the executor's journal at one point in time")
    p.add_argument("--to", required=True, help="a new folder, file:// URI, or object-store prefix "
                   "(s3://bucket/prefix[?endpoint_override=host:port&scheme=http]; credentials from AWS_* variables)")
    p.add_argument("--redis", help="Redis URL (default: the local stack)")
    p.add_argument("--journal", help="the executor's journal (default <HFT_HOME>/executor)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("restore", help="restore a backup into this HFT_HOME (Redis stopped)")
    p.add_argument("source", help="the backup's folder, file:// URI or object-store prefix")
    p.add_argument("--journal", help="where the executor's journal goes (default <HFT_HOME>/executor)")
    p.add_argument("--force", action="store_true", help="replace the state this home already has")
    p.set_defaults(func=cmd_restore)
