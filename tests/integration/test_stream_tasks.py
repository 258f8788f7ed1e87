"""The streaming job's ``tasks`` engine (hft.streaming.keyed) end to end on the real stack: per-ticker state in
Spark's state store (RocksDB), features and inference in Spark's tasks, predictions written from the tasks.
Same contract as the driver engine (tests/integration/test_streaming.py): every bar with full features
predicted once, with the champion's probability on the batch job's features, bad messages in the DLQ with their reasons, nothing lost
or written twice after a kill -9 with work outstanding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from hft.redis_conn import connect
from hft.streaming.messages import DLQ_REASONS
from polling import until
from ports import free_port
from stream_fixtures import consume, expected_probabilities, ready_count, stream_env, stream_stack

pytestmark = pytest.mark.integration

TICKERS = ["AAA", "BBB"]


#: Every valid bar published in this module, in order: what the stream's state has seen (see
#: stream_fixtures.with_history).
SENT: list = []


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    env = stream_env(tmp_path_factory.mktemp("home"))
    with stream_stack(env, TICKERS) as config:
        yield env, config


def stream_cmd(idle: float, master: str = "local[2]", checkpoint: Path | None = None, metrics_port: int = 0) -> list[str]:
    cmd = [str(Path(sys.executable).with_name("hft")), "stream", "--engine", "tasks", "--master", master,
           "--tickers", ",".join(TICKERS), "--trigger", "500 milliseconds", "--metrics-port", str(metrics_port),
           "--jvm-metrics-port", "0", "--stop-when-idle", str(idle), "--max-offsets", "200"]
    return cmd + (["--checkpoint", str(checkpoint)] if checkpoint else [])


def written(store) -> int:
    return store.r.xlen(store.stream_key)


def metric(port: int, name: str, **labels) -> float:
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + ("{" + want if want else "")) and not line.startswith("#"))


def publish(config, messages, extra=()):
    from hft.streaming.collectors import publish as send
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import BARS_TOPIC

    SENT.extend(messages)
    result = send(messages, config.kafka_bootstrap)
    if extra:
        TopicSink(config.kafka_bootstrap, BARS_TOPIC).send(list(extra))
    assert result.failed == 0
    return result


def test_tasks_engine_predicts_every_bar_like_the_batch_job_and_sends_bad_messages_to_the_dlq(env):
    from hft.streaming import collectors
    from hft.streaming.messages import encode_bar
    from hft.streaming.store import RedisStore

    env_vars, config = env
    messages = collectors.synthetic(TICKERS, date(2024, 3, 8), date(2024, 3, 8))[:300]
    good, first = json.loads(encode_bar(messages[-1])), json.loads(encode_bar(messages[0]))
    future = [(b"AAA", json.dumps({**first, "ts": "2099-01-02T15:00:00Z"}).encode()),
              (b"AAA", json.dumps({**first, "ts": first["ts"] + 40 * 86_400_000}).encode())]
    bad = [(b"AAA", json.dumps({**good, "close": float("nan")}).encode()),
           (b"AAA", json.dumps({**good, "high": 0.001}).encode()),
           (b"ZZZ", json.dumps({**good, "ticker": "ZZZ"}).encode()),
           (b"AAA", json.dumps({**good, "version": 7}).encode()),
           (b"AAA", b"definitely not json"),
           (b"AAA", b"{" + b" " * 9000 + b"}"),
           # Spark's parser reads the first "ticker", ours the last: it must not enter AAA's state
           (b"AAA", encode_bar(next(m for m in reversed(messages) if m.ticker == "AAA"))[:-1] + b',"ticker":"BBB"}')]
    publish(config, messages[:20], future)
    publish(config, messages[20:], bad)
    store = RedisStore(connect(config.redis_url))
    port = free_port()
    job = subprocess.Popen(stream_cmd(idle=10, metrics_port=port), env=env_vars, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    try:
        until(lambda: written(store) >= ready_count(messages), 300, "every prediction")
        # the metrics come from Spark's progress reports: each batch's counts once its tasks are done
        until(lambda: metric(port, "hft_stream_messages_in_total") == len(messages) + len(bad) + len(future), 20,
              "every message counted")
        assert metric(port, "hft_stream_predictions_total") == ready_count(messages)
        rejected = {r: metric(port, "hft_stream_messages_rejected_total", reason=r) for r in DLQ_REASONS}
    finally:
        _, err = job.communicate(timeout=400)
    assert job.returncode == 0, err[-4000:]

    stream = store.stream()
    assert len(stream) == ready_count(messages)
    assert len({(e["ticker"], e["bar_ts"]) for e in stream}) == len(stream)
    expected = expected_probabilities(env_vars["HFT_HOME"], messages, SENT)
    got = {(e["ticker"], int(e["bar_ts"])): float(e["probability"]) for e in stream}
    assert got.keys() == expected.keys()
    # The features are the batch job's to 1e-9 (tests/streaming/test_keyed.py); the network's layers after the
    # first run in float32 (hft.model.fast), whose rounding depends on the batch's rows: here one ticker's.
    assert max(abs(got[k] - expected[k]) for k in got) < 1e-6
    dlq = consume(config, "market.bars.dlq", expect=len(bad) + len(future))
    assert sorted(d["reason"] for d in dlq) == sorted(
        ["non_finite", "inconsistent_ohlc", "unknown_ticker", "wrong_version", "not_json", "oversized",
         "implausible_time", "implausible_time", "invalid_field"])
    assert {r: n for r, n in rejected.items() if n} == Counter(d["reason"] for d in dlq)
    # once each in Kafka too (read past the count, so a duplicate would show)
    published = consume(config, "predictions", expect=len(stream) + 1, timeout_s=15)
    assert sorted((p["ticker"], p["ts"]) for p in published) == sorted((e["ticker"], int(e["bar_ts"])) for e in stream)




def run_until_killed(env_vars, store, cmd, progress_to: int, timeout_s: float = 240) -> int:
    """Start ``cmd``, kill -9 its whole process tree once the predictions stream holds ``progress_to`` entries;
    the entries at the kill."""
    job = subprocess.Popen(cmd, env=env_vars, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        until(lambda: written(store) >= progress_to or job.poll() is not None, timeout_s, "predictions before the kill",
              every=0.05)
        assert job.poll() is None, "the job ended before the kill"
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    return written(store)


@pytest.mark.failover  # ~60 s: make test-failover (CI runs it)
def test_tasks_engine_survives_kill_9_with_work_outstanding_without_loss_or_duplicates(env, tmp_path):
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(connect(config.redis_url))
    checkpoint = tmp_path / "checkpoint"
    before = written(store)
    messages = collectors.synthetic(TICKERS, date(2024, 3, 11), date(2024, 3, 11))  # 780 bars, 200 per batch
    publish(config, messages)
    expected = before + ready_count(messages)
    at_kill = run_until_killed(env_vars, store, stream_cmd(idle=0, checkpoint=checkpoint), before + 100)
    assert at_kill < expected, "the kill came after the job had caught up: nothing was outstanding"
    proc = subprocess.run(stream_cmd(idle=10, checkpoint=checkpoint), env=env_vars, capture_output=True, text=True,
                          timeout=400)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert_every_bar_predicted_once_like_the_batch_job(env_vars, store, before, messages)


def executor_pids(run_dir: Path) -> list[int]:
    """The Spark executor JVMs of the workers whose folders are in ``run_dir`` (an executor runs in its
    worker's ``<work dir>/<app>/<executor>``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if (proc.name.isdigit() and b"CoarseGrainedExecutorBackend" in (proc / "cmdline").read_bytes()
                    and Path(os.readlink(proc / "cwd")).is_relative_to(run_dir)):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def assert_every_bar_predicted_once_like_the_batch_job(env_vars, store, before: int, messages) -> None:
    day = store.stream()[before:]
    assert len({(e["ticker"], e["bar_ts"]) for e in day}) == len(day) == ready_count(messages)
    expected = expected_probabilities(env_vars["HFT_HOME"], messages, SENT)
    assert max(abs(float(e["probability"]) - expected[(e["ticker"], int(e["bar_ts"]))]) for e in day) < 1e-6


@pytest.fixture
def spark_cluster(env):
    """A master and two workers (one core each) on free ports, for ``env``'s stack."""
    import dataclasses

    from hft import stack
    from ports import free_port

    env_vars, config = env
    ui = free_port()
    while any(stack.process.port_in_use(p) for p in (ui + 1, ui + 2)):  # the workers' UIs follow the master's
        ui = free_port()
    cluster = dataclasses.replace(config, spark_workers=2, spark_master_port=free_port(), spark_ui_port=ui)
    try:
        stack.up(cluster, ("spark",))
        yield cluster
    finally:
        stack.down(cluster, ("spark",))


@pytest.mark.failover
def test_tasks_engine_on_a_standalone_cluster_loses_nothing_when_an_executor_is_killed(env, spark_cluster, tmp_path):
    """Two workers share the tickers' state partitions; kill -9 of one's executor mid-stream: Spark runs its tasks
    again elsewhere from the state store's last version, and every bar is predicted once."""
    from hft.stack.spark_cluster import master_state
    from hft.streaming import collectors
    from hft.streaming.store import RedisStore

    env_vars, config = env
    store = RedisStore(connect(config.redis_url))
    before = written(store)
    messages = collectors.synthetic(TICKERS, date(2024, 3, 14), date(2024, 3, 14))
    publish(config, messages)
    expected = before + ready_count(messages)
    job = subprocess.Popen(stream_cmd(idle=10, master=spark_cluster.spark_master_url, checkpoint=tmp_path / "cp"),
                           env=env_vars, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "job.err", "wb"),  # noqa: SIM115
                           start_new_session=True)
    try:
        until(lambda: written(store) >= before + 100, 300, "the cluster's first predictions", every=0.1)
        app = master_state(spark_cluster)["activeapps"][0]
        assert app["cores"] == 2, f"the job runs on {app['cores']} core(s), not on both workers"
        victims = executor_pids(spark_cluster.run_dir)
        assert len(victims) == 2
        at_kill = written(store)
        os.kill(victims[0], signal.SIGKILL)
        assert at_kill < expected, "the kill came after the job had caught up: nothing was outstanding"
        assert job.wait(400) == 0, (tmp_path / "job.err").read_text()[-4000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    assert "Lost executor" in (tmp_path / "job.err").read_text(), "Spark did not notice the executor's death"
    assert_every_bar_predicted_once_like_the_batch_job(env_vars, store, before, messages)


@pytest.mark.failover
def test_the_standalone_cluster_lets_in_no_application_without_its_secret(env, spark_cluster, tmp_path):
    """A driver without the cluster's secret, and one with a wrong secret, get no executor (the master refuses
    them and they give up); the secret is in no daemon's command line nor in any log of the cluster; the web UIs
    of the master and of the workers ask for a login."""
    import sys as _sys
    import urllib.error
    import urllib.request

    from hft.spark_submit import spark_env
    from hft.stack.base import basic_auth
    from hft.stack.process import read_pid
    from hft.stack.spark_cluster import master_state, ui_credentials

    user, password = ui_credentials(spark_cluster)
    for port in (spark_cluster.spark_ui_port, spark_cluster.spark_ui_port + 1, spark_cluster.spark_ui_port + 2):
        for path in ("/", "/json/"):
            for who in (None, (user, password + "x"), ("admin", password)):
                request = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
                if who:
                    request.add_header("Authorization", basic_auth(*who))
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=10)
                assert refused.value.code == 401, (port, path, who and who[0])
        request = urllib.request.Request(f"http://127.0.0.1:{port}/")
        request.add_header("Authorization", basic_auth(user, password))
        with urllib.request.urlopen(request, timeout=10) as page:
            assert page.status == 200 and b"Spark" in page.read()

    app = tmp_path / "app.py"
    app.write_text("from pyspark.sql import SparkSession\n"
                   "print('COUNT', SparkSession.builder.getOrCreate().range(10).count())\n")
    submit = str(Path(_sys.executable).with_name("spark-submit"))
    variants = {"none": [], "wrong": ["--conf", "spark.authenticate=true", "--conf", "spark.authenticate.secret=wrong"]}
    drivers = {name: subprocess.Popen([submit, "--master", spark_cluster.spark_master_url, *conf, str(app)],
                                      env=spark_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for name, conf in variants.items()}
    for name, proc in drivers.items():
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode != 0 and "COUNT 10" not in out, f"{name}: the driver ran\n{out[-3000:]}"
    state = master_state(spark_cluster)
    assert state["activeapps"] == [] and state["completedapps"] == [], "the master registered an application"
    secret = (spark_cluster.home / "secrets" / "spark-secret").read_text().strip()
    conf = spark_cluster.run_dir / "spark-conf" / "spark-defaults.conf"
    assert conf.stat().st_mode & 0o777 == 0o600 and secret in conf.read_text()
    for name in ("spark-master", "spark-worker-1", "spark-worker-2"):
        pid = read_pid(spark_cluster.run_dir / f"{name}.pid")
        assert pid and secret not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    logs = [p for p in spark_cluster.run_dir.rglob("*") if p.is_file() and p != conf and secret.encode() in p.read_bytes()]
    assert logs == []
