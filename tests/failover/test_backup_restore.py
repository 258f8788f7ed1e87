"""``hft backup`` of a home that traded, ``hft restore`` into a fresh home on a new stack: the executor resumes
where it stopped (no order repeated, positions intact), the champion loads from the restored MLflow store (the
old home's artifacts gone), Redis and the lake hold what they held."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import hft_exec
from hft.redis_conn import connect
from ports import free_port
from stream_fixtures import train_champion

pytestmark = [pytest.mark.integration, pytest.mark.failover]

TICKERS = ["AAA", "BBB"]
BAR0 = 1_709_908_200_000  # 2024-03-08 14:30 UTC


def _env(home: Path) -> dict:
    return {**os.environ, "HFT_HOME": str(home), "HFT_REDIS_PORT": str(free_port()), "HFT_REDIS_REPLICAS": "0",
            "HFT_KAFKA_PORT": str(free_port()), "HFT_KAFKA_CONTROLLER_PORT": str(free_port()),
            "HFT_KAFKA_METRICS_PORT": str(free_port()), "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
            "HFT_LAKE_ROOT": str(home / "lake")}


def _hft(env: dict, *args: str) -> str:
    proc = subprocess.run([str(Path(sys.executable).with_name("hft")), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def _trade(config, journal: Path, predictions) -> dict:
    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService
    from hft.streaming.store import RedisStore

    r = connect(config.redis_url)
    RedisStore(r).commit(0, [], predictions)
    svc = ExecutionService(r, journal, TICKERS, ExecConfig(orders_per_second=1e6, order_burst=1e6,
                                                           max_prediction_age_s=1e9, latency_us=0.0),
                           block_ms=10, replay_clock=True)
    try:
        return svc.run(stop_when_idle_s=0.3)
    finally:
        svc.close()


def _orders(journal: Path) -> int:
    from hft.execution.journal import Journal

    events = Journal(journal).read()
    return int(sum(hft_exec.EVENT_TYPES.get(int(t), "") == "order_sent" for t in events["type"]))


def _preds(start: int, n: int):
    from hft.schemas import Prediction

    return [Prediction(t, "1m", BAR0 + 60_000 * k, 0.9 if (k // 2) % 2 == 0 else 0.1, "1", None, 0,
                       100.0 + k * 0.01, 0.002) for k in range(start, start + n) for t in TICKERS]


def test_restore_into_a_fresh_home_resumes_without_repeating_an_order(tmp_path_factory):
    from hft import stack
    from hft.model import registry

    a, b = tmp_path_factory.mktemp("home-a"), tmp_path_factory.mktemp("home-b")
    saved = tmp_path_factory.mktemp("backups") / "monday"
    env_a, env_b = _env(a), _env(b)
    old = dict(os.environ)
    orders = 0
    try:
        os.environ.update(env_a)
        cfg_a = stack.StackConfig.from_env()
        stack.up(cfg_a, ("redis",))
        train_champion(a, TICKERS)
        (a / "lake" / "bars").mkdir(parents=True)
        lake_file = a / "lake" / "bars" / "part-0.parquet"
        pd.DataFrame({"ticker": TICKERS, "close": [1.5, 2.5]}).to_parquet(lake_file)
        totals = _trade(cfg_a, a / "executor", _preds(0, 8))
        assert totals["orders"] >= 2 and totals["fills"] >= 1, totals
        r_a = connect(cfg_a.redis_url)
        positions = r_a.hgetall("hft:positions")
        stream_len = r_a.xlen("hft:predictions")
        orders = _orders(a / "executor")
        assert positions and orders >= 2

        said = _hft(env_a, "backup", "--to", str(saved))
        assert "backup in" in said and (saved / "manifest.json").exists()
        with pytest.raises(AssertionError, match="not empty"):
            _hft(env_a, "backup", "--to", str(saved))  # never over an older backup
        stack.down(cfg_a, ("redis",))
        (a / "mlartifacts").rename(a / "mlartifacts-gone")  # the restored home must not need the old one

        os.environ.clear()
        os.environ.update(env_b)
        _hft(env_b, "restore", str(saved))
        with pytest.raises(AssertionError, match="replace existing state"):
            _hft(env_b, "restore", str(saved))
        cfg_b = stack.StackConfig.from_env()
        stack.up(cfg_b, ("redis",))
        r_b = connect(cfg_b.redis_url)
        assert r_b.hgetall("hft:positions") == positions and r_b.xlen("hft:predictions") == stream_len
        assert (b / "lake" / "bars" / "part-0.parquet").read_bytes() == lake_file.read_bytes()
        version = registry.client().get_model_version_by_alias(registry.MODEL_NAME, registry.CHAMPION)
        assert str(b) in version.source or str(b) in (version.storage_location or "")
        from hft.streaming.champion import ChampionModel

        model, served = ChampionModel(None, refresh_s=float("inf"))()
        assert served == str(version.version) and model is not None

        # the executor on the restored home: nothing to redo, then the next predictions trade as usual
        again = _trade(cfg_b, b / "executor", [])
        assert again["orders"] == 0 and _orders(b / "executor") == orders
        assert r_b.hgetall("hft:positions") == positions
        more = _trade(cfg_b, b / "executor", _preds(8, 8))
        assert more["orders"] > 0 and _orders(b / "executor") == orders + more["orders"]
    finally:
        for env in (env_a, env_b):  # whatever is still running (down is idempotent)
            os.environ.clear()
            os.environ.update(env)
            stack.down(stack.StackConfig.from_env(), ("redis",))
        os.environ.clear()
        os.environ.update(old)
