"""Settings, frozen, read once from ``HFT_*`` environment variables.

Defaults are the local stack: everything lives under ``./var`` of the working directory. Secrets never
appear here with a default; they come from the environment only.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


#: A ticker symbol: upper-case letters, digits, '.' and '-', at most 10 characters, a letter first.
TICKER_PATTERN = re.compile(r"[A-Z][A-Z0-9.\-]{0,9}")


def parse_tickers(text: str, what: str = "tickers") -> tuple[str, ...]:
    """Comma-separated tickers, upper-cased, in order, without repeats; ValueError naming a bad one."""
    out = tuple(dict.fromkeys(t.strip().upper() for t in str(text).split(",") if t.strip()))
    bad = [t for t in out if not TICKER_PATTERN.fullmatch(t)]
    if bad:
        raise ValueError(f"{what}: invalid ticker {bad[0][:40]!r} (expected {TICKER_PATTERN.pattern})")
    if not out:
        raise ValueError(f"{what}: no tickers given")
    return out


def env_value(name: str, default: str) -> str:
    """``os.environ[name]``, or ``default`` when it is unset or empty."""
    value = os.environ.get(name)
    return default if value is None or value == "" else value


def env_count(name: str, default: int, minimum: int = 1) -> int:
    """A whole number of at least ``minimum`` from the environment (``default`` when unset); ValueError says
    which variable and why."""
    raw = env_value(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return value


def parse_setting(name: str, default: Any, raw: str) -> Any:
    """``raw`` (an environment value or a ``--set``) as the type of the setting's ``default``: bool
    (``1/0/true/false/yes/no``), a tuple of ints (``16,32,64``), int, float or str. ValueError names it."""
    try:
        if isinstance(default, bool):
            text = str(raw).strip().lower()
            if text not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return text in ("1", "true", "yes")
        if isinstance(default, tuple):
            return tuple(int(v) for v in str(raw).split(",") if v.strip())
        return type(default)(raw)
    except ValueError:
        raise ValueError(f"bad value for {name}: {raw!r} (expected {type(default).__name__})") from None


def settings_from_env(cls: type[T], prefix: str, **overrides: Any) -> T:
    """The one way a frozen settings dataclass is read from the environment: each field ``name`` from
    ``<prefix><NAME>`` (empty or unset: its default), parsed as its default's type (:func:`parse_setting`),
    then ``overrides``."""
    known = {f"{prefix}{f.name.upper()}" for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(k for k in os.environ if k.startswith(prefix) and k not in known)
    if unknown:  # a misspelt setting must not be ignored silently
        raise ValueError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        raw = os.environ.get(f"{prefix}{f.name.upper()}")
        if raw not in (None, ""):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]
            values[f.name] = parse_setting(f"{prefix}{f.name.upper()}", default, raw)
    return cls(**{**values, **overrides})


@dataclass(frozen=True)
class Settings:
    """Where things live and how the pipeline behaves.

    Attributes:
        home: root of all local state (``HFT_HOME``, default ``./var``).
        lake_root: the Parquet lake; a local path or a Spark/pyarrow URI such as ``s3a://bucket/lake``
            (``HFT_LAKE_ROOT``, default ``<home>/lake``). Clean bars live under ``<lake_root>/bars``,
            features under ``<lake_root>/features``, rejected batches under ``<lake_root>/quarantine``.
        tickers: the default universe (``HFT_TICKERS``, comma-separated).
        interval: default bar interval (``HFT_INTERVAL``, ``1m``).
        max_gap_minutes: largest gap between consecutive bars of one session that validation accepts
            (``HFT_MAX_GAP_MINUTES``, 60).
        spark_master: master for Spark jobs (``HFT_SPARK_MASTER``, ``local[*]``).
        log_level: ``HFT_LOG_LEVEL`` (INFO).
        promotion_margin: AUC margin the lower end of a challenger's paired bootstrap interval against the
            champion must exceed to be promoted (``HFT_PROMOTION_MARGIN``, 0.001; see
            :func:`hft.model.registry.gate`).
    """

    home: Path = field(default_factory=lambda: Path(env_value("HFT_HOME", "var")).absolute())
    lake_root: str = ""
    tickers: tuple[str, ...] = ()
    interval: str = "1m"
    max_gap_minutes: int = 60
    spark_master: str = "local[*]"
    log_level: str = "INFO"
    promotion_margin: float = 0.001

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(env_value("HFT_HOME", "var")).absolute()
        return cls(
            home=home,
            lake_root=env_value("HFT_LAKE_ROOT", str(home / "lake")),
            tickers=parse_tickers(env_value("HFT_TICKERS", "AAA,BBB,CCC,DDD"), "HFT_TICKERS"),
            interval=env_value("HFT_INTERVAL", "1m"),
            max_gap_minutes=int(env_value("HFT_MAX_GAP_MINUTES", "60")),
            spark_master=env_value("HFT_SPARK_MASTER", "local[*]"),
            log_level=env_value("HFT_LOG_LEVEL", "INFO"),
            promotion_margin=float(env_value("HFT_PROMOTION_MARGIN", str(cls.promotion_margin))),
        )

    @property
    def bars_root(self) -> str:
        return join_uri(self.lake_root, "bars")

    @property
    def features_root(self) -> str:
        return join_uri(self.lake_root, "features")

    @property
    def quarantine_root(self) -> str:
        return join_uri(self.lake_root, "quarantine")


#: Spark settings for jobs on this machine: driver and UI bound to loopback only, no UI for batch jobs.
SPARK_LOCAL_CONF: dict[str, str] = {
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.ui.enabled": "false",
    # A local lake has hundreds of small partitions: list them on the driver, not with a Spark job.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    # Let HotSpot compile the large methods Spark generates for the feature plan (see hft.features.spark).
    "spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods",
    "spark.executor.extraJavaOptions": "-XX:-DontCompileHugeMethods",
    # The feature plan generates ~120 classes; Spark's cache of compiled ones holds 100 by default, so every
    # run compiled ~90 again: 2.4x the feature job's time on 1M bars (hft.features.spark).
    "spark.sql.codegen.cache.maxEntries": "1000",
}
SPARK_LOCAL_ENV: dict[str, str] = {"SPARK_LOCAL_IP": "127.0.0.1"}


def stack_secret(name: str, env: str, home: Path | None = None) -> str | None:
    """A secret of the stack as a client finds it: the environment variable ``env``, else the file ``name``
    under ``<home>/secrets`` (default ``HFT_HOME``) that the stack generated (``hft.stack.base.secret``); None
    when neither holds one (a server of your own without a login)."""
    value = os.environ.get(env)
    if value:
        return value
    path = Path(home if home is not None else Settings.from_env().home) / "secrets" / name
    return (path.read_text().strip() or None) if path.exists() else None


def join_uri(root: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (``s3a://b/x`` + ``y`` -> ``s3a://b/x/y``)."""
    out = str(root).rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out
