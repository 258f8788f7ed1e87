"""End to end on the real stack: Kafka broker, Redis, spark-submit streaming job, MLflow champion.

Bars go through Kafka into the Spark job; predictions must appear in Redis for every bar with full
features, bad messages in the DLQ with their reasons, and a kill -9 of the job mid-stream followed by a
restart must neither lose nor duplicate a prediction.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pytest

import hft_exec
from hft.redis_conn import connect
from ports import free_port
from stream_fixtures import (
    consume,
    expected_probabilities,
    files_holding,
    ready_count,
    stream_env,
    stream_stack,
    with_history,
)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TICKERS = ["AAA", "BBB"]


#: Every valid bar published in this module, in order: what the stream's state has seen (see
#: stream_fixtures.with_history).
SENT: list = []


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Kafka + Redis on free ports, topics created, and a champion model in a sqlite MLflow store."""
    env = stream_env(tmp_path_factory.mktemp("home"), HFT_PROMETHEUS_PORT=str(free_port()),
                     HFT_NODE_EXPORTER_PORT=str(free_port()), HFT_REDIS_EXPORTER_PORT=str(free_port()),
                     HFT_ALERTMANAGER_PORT=str(free_port()), HFT_ALERT_HOOK_PORT=str(free_port()))
    with stream_stack(env, TICKERS) as config:
        yield env, config


def _publish(config, messages, extra: list[tuple[bytes, bytes]] = ()):
    from hft.streaming.collectors import publish
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import BARS_TOPIC

    SENT.extend(messages)
    result = publish(messages, config.kafka_bootstrap)
    if extra:
        TopicSink(config.kafka_bootstrap, BARS_TOPIC).send(extra)
    return result


def _stream_cmd(env, idle: float, metrics_port: int = 0, max_offsets: int = 20000, jvm_metrics_port: int = 0) -> list[str]:
    return [str(Path(sys.executable).with_name("hft")), "stream", "--master", "local[2]", "--tickers", ",".join(TICKERS),
            "--trigger", "500 milliseconds", "--metrics-port", str(metrics_port), "--stop-when-idle", str(idle),
            "--max-offsets", str(max_offsets), "--jvm-metrics-port", str(jvm_metrics_port)]


def _kafka_end(config) -> int:
    """Messages in ``market.bars`` (the sum of the partitions' high watermarks)."""
    from hft.streaming.kafka_io import watermarks

    return sum(high for _, high in watermarks(config.kafka_bootstrap, "market.bars").values())


def _committed(store) -> int:
    return sum(o for (t, _), o in store.committed_offsets().items() if t == "market.bars")


def _metric(port: int, name: str) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name) and not line.startswith("#"))


def _json_or_none(value: bytes):
    try:
        return json.loads(value)
    except ValueError:
        return None


def test_stream_predicts_every_bar_and_sends_bad_messages_to_dlq(env):
    from hft.streaming import collectors
    from hft.streaming.messages import encode_bar
    from hft.streaming.store import RedisStore

    env_vars, config = env
    messages = collectors.synthetic(TICKERS, date(2024, 3, 8), date(2024, 3, 8))[:300]
    good = json.loads(encode_bar(messages[-1]))
    first = json.loads(encode_bar(messages[0]))
    # Stamped in the future (of the wall clock; of the ticker's bars), sent before the real bars that follow
    # them: they go to the DLQ and must not block the ticker.
    future = [(b"AAA", json.dumps({**first, "ts": "2099-01-02T15:00:00Z"}).encode()),
              (b"AAA", json.dumps({**first, "ts": first["ts"] + 40 * 86_400_000}).encode())]
    bad = [
        (b"AAA", json.dumps({**good, "close": float("nan")}).encode()),
        (b"AAA", json.dumps({**good, "high": 0.001}).encode()),
        (b"ZZZ", json.dumps({**good, "ticker": "ZZZ"}).encode()),
        (b"AAA", json.dumps({**good, "version": 7}).encode()),
        (b"AAA", b"definitely not json"),
        (b"AAA", b"{" + b" " * 9000 + b"}"),
    ]
    sent = _publish(config, messages[:20], future)
    sent2 = _publish(config, messages[20:], bad)
    assert sent.sent + sent2.sent == 300 and sent.failed == sent2.failed == 0
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    store = RedisStore(connect(config.redis_url))
    stream = store.stream()
    assert len(stream) == ready_count(messages)
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream)
    for ticker in TICKERS:
        latest = store.latest(ticker)
        assert latest["model_version"] == "1" and 0 < float(latest["probability"]) < 1
    # Through Kafka and Spark, each probability equals the champion applied to the batch features.
    expected = expected_probabilities(env_vars["HFT_HOME"], messages, SENT)
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in stream}
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-9
    dlq = consume(config, "market.bars.dlq", expect=len(bad) + len(future))
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["non_finite", "inconsistent_ohlc", "unknown_ticker", "wrong_version", "not_json", "oversized",
         "implausible_time", "implausible_time"])
    predictions = consume(config, "predictions", expect=len(stream))
    assert len(predictions) == len(stream)


@pytest.mark.failover  # ~60 s: make test-failover (CI runs it)
def test_stream_reloads_champion_then_survives_kill_9_without_loss_or_duplicates(env):
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(connect(config.redis_url))
    before = len(store.stream())
    from hft.model import registry

    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))
    port = free_port()
    job = subprocess.Popen(_stream_cmd(env_vars, idle=0, metrics_port=port), env=env_vars, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _publish(config, messages[:300])
        deadline = time.monotonic() + 120
        while len(store.stream()) <= before and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(store.stream()) > before, "the job produced nothing before the kill"
        assert _metric(port, "hft_stream_predictions_total") > 0
        assert _metric(port, "hft_stream_messages_in_total") >= 300
        assert _metric(port, "hft_stream_model_version") == 1
        # Move the champion alias by hand, past the gate, as a user does in the MLflow UI (it calls the same
        # registry API): the running job must pick up version 2 without a restart, and say it was not gated.
        registry.client().set_registered_model_alias(registry.MODEL_NAME, registry.CHAMPION, "2")
        time.sleep(6)  # longer than the job's alias refresh period (5 s)
        _publish(config, messages[300:500])
        deadline = time.monotonic() + 60
        while not any(e["model_version"] == "2" for e in store.stream()[before:]) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert any(e["model_version"] == "2" for e in store.stream()[before:]), "champion reload not seen"
        assert _metric(port, "hft_stream_model_version") == 2
        assert _metric(port, "hft_stream_model_gate_approved") == 0  # version 2 was never approved by the gate
        moved = registry.champion_history(registry.client())[-1]
        assert moved["version"] == "2" and moved["by"] == registry.OUTSIDE and moved["gate"] == "unknown"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    # Now a job that takes at most 40 messages per micro-batch, killed -9 while the rest of the day waits in
    # Kafka unprocessed.
    job = subprocess.Popen(_stream_cmd(env_vars, idle=0, max_offsets=40), env=env_vars, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _publish(config, messages[500:])
        end = _kafka_end(config)
        start = _committed(store)
        deadline = time.monotonic() + 120
        while _committed(store) < start + 80 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _committed(store) >= start + 80, "the restarted job processed nothing before the kill"
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # kill -9 the whole spark-submit tree mid-stream
        job.wait(30)
    outstanding = end - _committed(store)
    assert outstanding > 0, "the kill came after the job had caught up: nothing was in flight"
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert _committed(store) == end
    day = [e for e in store.stream()[before:]]
    assert len({(e["ticker"], e["bar_ts"]) for e in day}) == len(day) == ready_count(messages)


def test_stream_lost_checkpoint_resumes_from_committed_offsets_without_loss_or_duplicates(env):
    """Spark's checkpoint deleted while Redis holds the state: before, batch ids restarted at 0 and every
    batch was skipped as already committed; now the job resumes from the offsets Redis committed."""
    import shutil

    from hft import stack
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(connect(config.redis_url))
    messages = collectors.synthetic(TICKERS, date(2024, 3, 12), date(2024, 3, 12))[:200]
    _publish(config, messages)
    before = len(store.stream())
    assert subprocess.run(_stream_cmd(env_vars, idle=6), env=env_vars, capture_output=True, timeout=300).returncode == 0
    checkpoint = stack.StackConfig.from_env().run_dir / "checkpoints" / "predict_stream"
    assert (checkpoint / "offsets").is_dir()
    shutil.rmtree(checkpoint)
    more = collectors.synthetic(TICKERS, date(2024, 3, 13), date(2024, 3, 13))[:200]
    _publish(config, more)
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "resuming from them" in proc.stderr
    assert _committed(store) == _kafka_end(config)
    new = store.stream()[before:]
    assert len({(e["ticker"], e["bar_ts"]) for e in new}) == len(new) == ready_count(messages) + ready_count(more)


def test_stream_and_executor_run_together_every_prediction_decided_orders_and_fills_in_kafka(env):
    """The streaming job and the real `hft execute` process side by side on the stack: every prediction the
    stream writes is decided once (the executor's group acknowledges all of them), and Kafka `orders` holds
    exactly the orders and fills of the executor's journal, each position equal to Redis's."""
    from hft import stack
    from hft.execution.journal import Journal
    from hft.execution.service import GROUP
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(connect(config.redis_url))
    journal = Path(env_vars["HFT_HOME"]) / "executor-together"
    # thresholds at 0.5: the small test model's probabilities hover near it, and every decision must trade
    run_env = {**env_vars, **{f"HFT_EXEC_{k}": "0.5" for k in ("ENTER_LONG", "EXIT_LONG", "ENTER_SHORT", "EXIT_SHORT")}}
    # Prometheus watches them: both processes announce their /metrics (file discovery), and every query of the
    # Grafana dashboard must return data from this real run.
    stack.up(config, ("prometheus", "node-exporter", "redis-exporter"))
    stream_log = Path(env_vars["HFT_HOME"]) / "stream-together.log"  # scanned for secrets below
    stream = subprocess.Popen(_stream_cmd(env_vars, idle=30, metrics_port=free_port(), jvm_metrics_port=free_port()),
                              env=env_vars, stdout=open(stream_log, "wb"),  # noqa: SIM115 - closed with the process
                              stderr=subprocess.STDOUT, start_new_session=True)
    executor = None
    try:
        deadline = time.monotonic() + 120
        while not store.running() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert store.running(), "the streaming job did not start"
        executor = subprocess.Popen(
            [str(Path(sys.executable).with_name("hft")), "execute", "--tickers", ",".join(TICKERS), "--replay-clock",
             "--journal", str(journal), "--metrics-port", str(free_port()), "--stop-when-idle", "40"],
            env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # two waves a few scrapes apart: a series born with its first burst shows no rate until it grows again
        bars = list(collectors.synthetic(TICKERS, date(2024, 3, 14), date(2024, 3, 14)))
        _publish(config, bars[: len(bars) // 2], extra=[(b"AAA", b"{not json")])  # one for the DLQ panel
        time.sleep(12)
        _publish(config, bars[len(bars) // 2:])
        missing = _dashboard_until_every_query_has_data(config, (stream, executor), timeout_s=120)
        assert missing == [], f"dashboard queries without data: {missing}"
        _console_page_has_data(config, Path(env_vars["HFT_HOME"]) / "shots")
        assert stream.wait(300) == 0
        out, err = executor.communicate(timeout=300)
        assert executor.returncode == 0, err[-3000:]
    finally:
        for proc in (stream, executor):
            if proc is not None and proc.poll() is None:
                proc.kill()
        stack.down(config, ("prometheus", "node-exporter", "redis-exporter"))
    predictions = store.r.xlen(store.stream_key)
    group = next(g for g in store.r.xinfo_groups(store.stream_key) if g["name"] == GROUP)
    assert group["pending"] == 0 and group["lag"] == 0 and group["entries-read"] == predictions
    assert f"executor: {predictions} predictions read" in out
    events = Journal(journal).read()
    names = np.array([hft_exec.EVENT_TYPES.get(int(t), "") for t in events["type"]])
    wanted = np.isin(names, ["order_sent", "fill", "order_done", "halt", "resume"])
    records = consume(config, "orders", expect=int(wanted.sum()), timeout_s=30)
    assert len(records) == int(wanted.sum()) > 0
    assert [r["seq"] for r in records] == list(np.flatnonzero(wanted))  # in journal order, none twice
    sent = [r for r in records if r["type"] == "order_sent"]
    fills = [r for r in records if r["type"] == "fill"]
    assert len(sent) == int((names == "order_sent").sum()) > 0 and len(fills) == int((names == "fill").sum()) > 0
    positions = store.r.hgetall("hft:positions")
    for ticker in TICKERS:
        mine = [r for r in fills if r["ticker"] == ticker]
        assert mine and mine[-1]["position"] == sum(r["qty"] for r in mine) == int(positions[ticker])
    # Redis's and Kafka's passwords reached every client (the stream and Spark's Kafka source, the executor, the
    # exporter) and no log (the stream's and Spark's own included), checkpoint, journal or Kafka record of the
    # run: only their own files and the servers' configurations hold them.
    home = Path(env_vars["HFT_HOME"])
    kafka_secret = home / "secrets" / "kafka-password"
    assert stream_log.stat().st_size > 0
    for secret, allowed in ((config.redis_password_file, {config.run_dir / "redis" / "redis.conf"}),
                            (kafka_secret, {config.run_dir / "kafka" / "server.properties"})):
        password = secret.read_text().strip()
        assert len(password) >= 24
        assert files_holding(home, password, {secret, *allowed}) == [], secret.name
        assert password not in out + err
        assert all(password not in json.dumps(r) for r in records)


def _console_page_has_data(config, shots_fallback: Path) -> None:
    """Prometheus' console page (the dashboard without Grafana) in a real browser: every row has data; a
    screenshot for the README."""
    from browser import chromium, new_page, screenshot_dir
    from hft.stack.monitoring import ui_credentials

    with chromium() as browser, new_page(browser, 1400, 1000, credentials=ui_credentials(config)) as page:
        page.goto(f"{config.prometheus_url}/consoles/hft.html")
        assert page.locator("div.panel").count() == len(json.loads(
            (Path(__file__).resolve().parents[2] / "infra" / "grafana" / "hft-dashboard.json").read_text())["panels"]) + 1
        empty = page.locator("td.none").all_inner_texts()
        assert empty == [], f"console rows without data: {empty}"
        page.screenshot(path=str(screenshot_dir(shots_fallback) / "prometheus-console.png"), full_page=True)


def dashboard_queries(rate_interval: str = "1m") -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of the Grafana dashboard, Grafana's variables filled in."""
    from hft.stack import repo_root

    dashboard = json.loads((repo_root() / "infra" / "grafana" / "hft-dashboard.json").read_text())
    return [(panel["title"], target["expr"].replace("$__rate_interval", rate_interval))
            for panel in dashboard["panels"] for target in panel["targets"]]


def _dashboard_until_every_query_has_data(config, processes, timeout_s: float) -> list[str]:
    """Run every dashboard query against the live Prometheus until each returns a number (or time runs out, or a
    process exits); the queries still without one."""
    import math
    import urllib.parse

    from hft.stack.monitoring import prometheus_get

    queries = dashboard_queries()
    assert len(queries) >= 20
    missing = [expr for _, expr in queries]
    deadline = time.monotonic() + timeout_s
    while missing and time.monotonic() < deadline and all(p.poll() is None for p in processes):
        time.sleep(2)
        still = []
        for expr in missing:
            body = json.loads(prometheus_get(config, f"/api/v1/query?{urllib.parse.urlencode({'query': expr})}"))
            assert body["status"] == "success", (expr, body)
            if not any(math.isfinite(float(series["value"][1])) for series in body["data"]["result"]):
                still.append(expr)  # no series, or only NaN (a quantile of no observations in the window)
        missing = still
    return missing


def test_stream_serves_a_conv1d_champion_from_the_ticker_window_like_the_backtest(env):
    """A conv1d champion through Kafka and Spark: each prediction is the model on the last `lookback` bars'
    features of the same ticker and session, exactly as the backtest (and training) build its input."""
    from datetime import datetime, timezone

    from hft.backtest.predictions import features_for, score
    from hft.data.sources.synthetic import SyntheticSource
    from hft.features.reference import compute_features
    from hft.model import registry
    from hft.model.config import ModelConfig
    from hft.model.dataset import prepare
    from hft.model.fast import FastPredictor
    from hft.model.training import train
    from hft.streaming import collectors
    from hft.streaming.state import bars_frame
    from hft.streaming.store import RedisStore

    env_vars, config = env
    bars = SyntheticSource().fetch(TICKERS, datetime(2024, 1, 2, tzinfo=timezone.utc),
                                   datetime(2024, 1, 13, tzinfo=timezone.utc), "1m")
    frame, features = prepare(compute_features(bars))
    cfg = ModelConfig(architecture="conv1d", lookback=6, conv_kernel=3, conv_filters=4, epochs=1, folds=1,
                      bootstrap=20, widths=(8, 16, 32, 64))
    version = registry.log_training(train(frame, features, cfg), {}, None).version
    registry.promote(version, "test: conv1d")
    store = RedisStore(connect(config.redis_url))
    before = len(store.stream())
    messages = collectors.synthetic(TICKERS, date(2024, 3, 15), date(2024, 3, 15))[:200]
    _publish(config, messages)
    proc = subprocess.run(_stream_cmd(env_vars, idle=8), env=env_vars, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in store.stream()[before:]}
    assert {e["model_version"] for e in store.stream()[before:]} == {version}
    predictor = FastPredictor.from_weights_file(registry.weights_path(registry.client(), version, env_vars["HFT_HOME"]))
    feats = features_for(bars_frame(with_history(messages, SENT)))  # the earlier days' bars: the overnight gap
    expected = score(feats, predictor)
    ok = np.isfinite(expected) & feats["ts"].isin(bars_frame(messages)["ts"]).to_numpy()
    want = dict(zip(zip(feats["ticker"][ok], feats["ts"][ok].dt.as_unit("ms").astype("int64")), expected[ok]))
    assert got.keys() == want.keys() and len(got) > 100
    # float32 layers after the first, batched differently: a wrong window would be off by ~1e-2
    assert max(abs(got[k] - want[k]) for k in got) < 1e-6


def test_hft_collect_yfinance_executable_sends_completed_bars_once_and_serves_moving_metrics(env, tmp_path):
    """The real `hft collect yfinance` process, its yfinance talking HTTPS to a fake Yahoo through a local
    proxy (tests/fake_yahoo_proxy.py): completed bars only, none twice across a restart, metrics served
    and moving while it runs. Last in this module: it publishes SPY, outside the other tests' universe."""
    from datetime import time as clock_time

    import numpy as np
    import pandas as pd

    from fake_yahoo import FakeYahoo
    from fake_yahoo_proxy import FakeYahooProxy

    class LiveYahoo(FakeYahoo):
        """Every minute of the last hour up to the wall clock; the minute still forming has volume 7."""

        def _answer(self, url):
            now = pd.Timestamp.now(tz="UTC").floor("min")
            index = pd.date_range(now - pd.Timedelta(minutes=60), now, freq="min")
            prices = 100.0 + np.arange(len(index))
            volume = np.full(len(index), 1000.0)
            volume[-1] = 7.0
            self.bars["SPY"] = pd.DataFrame({"open": prices, "high": prices + 0.5, "low": prices - 0.5,
                                             "close": prices + 0.25, "volume": volume}, index=index)
            return super()._answer(url)

    env_vars, config = env
    yahoo = LiveYahoo(regular_hours=(clock_time(0, 0), clock_time(23, 59)))
    home = tmp_path / "collector-home"
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("hft")), "collect", "yfinance", "--tickers", "SPY", "--poll-s", "2",
           "--extended-hours", "--metrics-port", str(port)]
    with FakeYahooProxy(yahoo, tmp_path) as proxy:
        # a collector with a state folder of its own (as on another machine): Kafka's password given to it
        run_env = {**env_vars, **proxy.env, "HFT_HOME": str(home),
                   "HFT_KAFKA_PASSWORD": (Path(env_vars["HFT_HOME"]) / "secrets" / "kafka-password").read_text().strip()}
        job = subprocess.Popen([*cmd, "--polls", "4"], env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        seen, deadline = [], time.monotonic() + 60
        while job.poll() is None and time.monotonic() < deadline:
            try:
                seen.append(_metric(port, 'hft_collector_messages_sent_total{source="yfinance"}'))
            except OSError:
                pass
            time.sleep(0.3)
        out, err = job.communicate(timeout=60)
        assert job.returncode == 0, err[-3000:]
        assert any(v > 0 for v in seen), f"metrics never showed a sent bar while the collector ran: {seen}"
        again = subprocess.run([*cmd, "--polls", "1"], env=run_env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        ended = pd.Timestamp.now(tz="UTC")
    assert any("/v8/finance/chart/SPY" in u for u in yahoo.seen)
    bars = [m for m in consume(config, "market.bars", expect=10**6, timeout_s=10, parse=_json_or_none)
            if m and m.get("ticker") == "SPY"]  # earlier tests left hostile messages in the topic
    stamps = [m["ts"] for m in bars]
    assert len(stamps) >= 25, stamps  # the default 30-minute lookback, minus the minute still forming
    assert len(set(stamps)) == len(stamps), "a bar was sent twice"
    assert all(m["volume"] != 7.0 for m in bars), "the forming minute was sent"
    assert max(stamps) <= (ended - pd.Timedelta(minutes=1)).value // 1_000_000
    assert "bars sent" in out
