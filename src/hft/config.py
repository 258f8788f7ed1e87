"""Settings, frozen, read once from ``HFT_*`` environment variables.

Defaults are the local stack: everything lives under ``./var`` of the working directory. Secrets never
appear here with a default; they come from the environment only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _env(name: str, default: str) -> str:
    value = os.environ.get(name)
    return default if value is None or value == "" else value


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

    home: Path = field(default_factory=lambda: Path(_env("HFT_HOME", "var")).absolute())
    lake_root: str = ""
    tickers: tuple[str, ...] = ()
    interval: str = "1m"
    max_gap_minutes: int = 60
    spark_master: str = "local[*]"
    log_level: str = "INFO"
    promotion_margin: float = 0.001

    @classmethod
    def from_env(cls) -> "Settings":
        home = Path(_env("HFT_HOME", "var")).absolute()
        return cls(
            home=home,
            lake_root=_env("HFT_LAKE_ROOT", str(home / "lake")),
            tickers=tuple(
                t.strip().upper() for t in _env("HFT_TICKERS", "AAA,BBB,CCC,DDD").split(",") if t.strip()
            ),
            interval=_env("HFT_INTERVAL", "1m"),
            max_gap_minutes=int(_env("HFT_MAX_GAP_MINUTES", "60")),
            spark_master=_env("HFT_SPARK_MASTER", "local[*]"),
            log_level=_env("HFT_LOG_LEVEL", "INFO"),
            promotion_margin=float(_env("HFT_PROMOTION_MARGIN", str(cls.promotion_margin))),
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
}
SPARK_LOCAL_ENV: dict[str, str] = {"SPARK_LOCAL_IP": "127.0.0.1"}


def join_uri(root: str, *parts: str) -> str:
    """Join path parts onto a local path or a URI (``s3a://b/x`` + ``y`` -> ``s3a://b/x/y``)."""
    out = str(root).rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out
