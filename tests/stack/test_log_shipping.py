"""Logs and the trading record in a real Elasticsearch node, through the real shipper process: searches that
answer an operator's questions, kill -9 of the shipper mid-shipment, an Elasticsearch outage, retention."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from hft.observability.elastic import EVENTS, LOGS, Query, apply_retention, client, ensure_templates, search
from hft.stack import down, ensure_topics, orders_topic, stream_topics, up
from polling import until
from ports import make_stack_config, stack_home

pytestmark = pytest.mark.integration

BAR_START_MS = (int(time.time() * 1000) // 60_000 - 30) * 60_000  # a recent minute: indices of today


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("logship")
    cfg = make_stack_config(home)
    try:
        with stack_home(cfg):
            up(cfg, ["kafka", "redis", "elasticsearch"])
            ensure_topics(cfg.kafka_bootstrap, {**stream_topics(), **orders_topic()})
            yield cfg
    finally:
        down(cfg)


def _env(cfg, **extra) -> dict:
    return {**os.environ, "HFT_HOME": str(cfg.home), "HFT_ELASTICSEARCH_URL": cfg.elasticsearch_url,
            "HFT_KAFKA_PORT": str(cfg.kafka_port), "HFT_REDIS_PORT": str(cfg.redis_port), **extra}


def _shipper(cfg, *args: str) -> subprocess.Popen:
    """The shipper process (its stderr in a file: a pipe nobody reads would block it)."""
    err = open(cfg.home / f"shipper-stderr-{time.monotonic_ns()}.txt", "w+b")  # noqa: SIM115 - closed by _stop
    proc = subprocess.Popen([sys.executable, "-m", "hft.observability.shipper", "--kafka", cfg.kafka_bootstrap,
                             *args], env=_env(cfg), stdout=subprocess.DEVNULL, stderr=err)
    proc.err_file = err  # type: ignore[attr-defined]
    return proc


def _client(cfg):
    """The test's own reads: a first refresh of a new daily index can take more than the default 10 s on a
    loaded 2-core machine (CI saw a read timeout), which says nothing about the shipper."""
    return client(cfg.elasticsearch_url, timeout=60.0)


def _count(es, index: str, **query) -> int:
    es.indices.refresh(index=index, ignore_unavailable=True, allow_no_indices=True)
    return es.count(index=index, ignore_unavailable=True, allow_no_indices=True, **query)["count"]


def _stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    err = proc.err_file  # type: ignore[attr-defined]
    err.seek(0)
    text = err.read().decode(errors="replace")
    err.close()
    return text[-20_000:]


def _write_log(folder, name: str, n: int, start: int = 0, prefix: str = "line") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    with open(folder / name, "a") as f:
        for i in range(start, start + n):
            ts = (now + timedelta(microseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            f.write(json.dumps({"@timestamp": ts, "log.level": "info", "message": f"{prefix} {i}",
                                "service": {"name": "load"}, "hft": {"i": i}}) + "\n")


def test_searches_answer_why_a_bar_went_to_the_dlq_and_which_orders_followed_a_prediction(stack, tmp_path):
    from hft.execution.config import ExecConfig
    from hft.execution.service import ExecutionService
    from hft.redis_conn import connect
    from hft.schemas import Prediction
    from hft.streaming.kafka_io import TopicSink
    from hft.streaming.messages import BarMessage, dlq_record, encode_bar, prediction_record
    from hft.streaming.store import RedisStore

    cfg = stack
    es = _client(cfg)
    # a refused bar, as the stream writes it to the DLQ
    future = BarMessage("QQQ", "1m", BAR_START_MS + 86_400_000, 1, 1, 1, 1, 5)
    TopicSink(cfg.kafka_bootstrap, "market.bars.dlq").send([(b"QQQ", dlq_record(
        "implausible_time", "ts is 1440 minutes ahead of the wall clock", "market.bars", 0, 41, b"QQQ",
        encode_bar(future)))])
    # bars and their predictions, and a real executor trading them (orders and fills published to Kafka)
    preds = [Prediction("SPY", "1m", BAR_START_MS + 60_000 * k, 0.9 if (k // 2) % 2 == 0 else 0.1, "7", None,
                        0, 100.0 + k * 0.01, 0.002) for k in range(8)]
    TopicSink(cfg.kafka_bootstrap, "market.bars").send(
        [(b"SPY", encode_bar(BarMessage("SPY", "1m", p.ts_ms, 100, 100, 100, p.close, 10))) for p in preds])
    TopicSink(cfg.kafka_bootstrap, "predictions").send([(b"SPY", prediction_record(p)) for p in preds])
    r = connect(cfg.redis_url)
    RedisStore(r).commit(0, [], preds)
    svc = ExecutionService(r, tmp_path / "journal", ["SPY"], ExecConfig(
        orders_per_second=1e6, order_burst=1e6, max_prediction_age_s=1e9, latency_us=0.0),
        kafka=TopicSink(cfg.kafka_bootstrap, "orders"), block_ms=10, replay_clock=True)
    totals = svc.run(stop_when_idle_s=0.05)
    svc.close()
    assert totals["orders"] >= 2 and totals["fills"] >= 1, totals
    sent = [f for _, f in r.xrange("hft:orders") if f["type"] == "order_sent"]

    proc = _shipper(cfg)
    try:
        expected = len(preds) * 2 + 1 + len(list(r.xrange("hft:orders")))
        until(lambda: _count(es, EVENTS) >= expected, 60, f"{expected} events indexed")
    finally:
        log_tail = _stop(proc)
    assert _count(es, EVENTS) == expected, log_tail

    # why did this bar go to the DLQ?  -> by its correlation id, with its reason
    why = search(es, Query(correlation_id=future.correlation_id))
    assert [d["event"]["dataset"] for d in why] == ["hft.dlq"]
    assert why[0]["event"]["reason"] == "implausible_time" and "ahead of the wall clock" in why[0]["message"]
    # which orders followed this prediction? -> its bar, prediction, order and the fills of that order
    cid = sent[0]["correlation_id"]
    trail = search(es, Query(correlation_id=cid))
    kinds = [d["event"]["dataset"] for d in trail]
    assert "hft.bar" in kinds and "hft.prediction" in kinds and "hft.order" in kinds, kinds
    actions = {d["event"].get("action") for d in trail if d["event"]["dataset"] == "hft.order"}
    assert "order_sent" in actions and "fill" in actions
    assert all(d["hft"]["order_id"] == int(sent[0]["order_id"]) for d in trail if d["event"]["dataset"] == "hft.order")

    # the same through the terminal command
    cli = subprocess.run([sys.executable, "-m", "hft.cli", "logs", "search", "--dataset", "hft.dlq", "--since", "2d",
                          "--fail-empty"], env=_env(cfg), capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert "implausible_time" in cli.stdout and future.correlation_id in cli.stdout
    cli = subprocess.run([sys.executable, "-m", "hft.cli", "logs", "search", "--correlation-id", cid, "--json"],
                         env=_env(cfg), capture_output=True, text=True, timeout=60)
    assert cli.returncode == 0, cli.stderr
    assert {json.loads(line)["event"]["dataset"] for line in cli.stdout.splitlines()} >= {"hft.order", "hft.prediction"}


def test_logs_of_the_processes_are_searchable_by_service_level_and_text(stack):
    cfg = stack
    es = _client(cfg)
    # a real command logging a warning into its own file under HFT_HOME/logs
    run = subprocess.run([sys.executable, "-m", "hft.cli", "execute", "halt"], env=_env(cfg), capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    subprocess.run([sys.executable, "-c", "import logging; from hft.observability.logging import configure_logging, "
                    "trace; configure_logging(service='hft-probe'); logging.getLogger('p').error('probe failed "
                    "loudly', extra=trace('ZZZ@1'))"], env=_env(cfg), check=True, timeout=60)
    proc = _shipper(cfg, "--kafka", "none")
    try:
        found = until(lambda: search(es, Query(service="hft-probe", level="error", text="loudly")), 60, "the probe's log")
    finally:
        _stop(proc)
    assert found[0]["trace"]["id"] == "ZZZ@1" and found[0]["message"] == "probe failed loudly"
    assert not search(es, Query(service="hft-probe", level="critical"))


def test_shipper_killed_mid_shipment_resumes_without_loss_or_duplicates(stack):
    cfg = stack
    es = _client(cfg)
    folder = cfg.home / "logs"
    name = "load-20261203T000000-1.json"
    total = 40_000
    _write_log(folder, name, total, prefix="kill")
    index = f"{LOGS}-*"
    proc = _shipper(cfg, "--kafka", "none")
    try:
        until(lambda: _count(es, index, query={"match": {"message": "kill"}}) > 0, 60, "the first documents")
        proc.kill()  # kill -9 while documents are outstanding
        proc.wait()
        at_kill = _count(es, index, query={"match": {"message": "kill"}})
        assert 0 < at_kill < total, f"the shipper should be mid-shipment at the kill: {at_kill} of {total}"
        _write_log(folder, name, 1000, start=total, prefix="kill")
        proc = _shipper(cfg, "--kafka", "none")
        until(lambda: _count(es, index, query={"match": {"message": "kill"}}) >= total + 1000, 180, "all documents")
    finally:
        _stop(proc)
    assert _count(es, index, query={"match": {"message": "kill"}}) == total + 1000  # none twice, none lost


def test_shipper_buffers_while_elasticsearch_is_down_and_catches_up(stack):
    cfg = stack
    es = _client(cfg)
    folder = cfg.home / "logs"
    name = "outage-20261203T000000-2.json"
    index = f"{LOGS}-*"
    proc = _shipper(cfg, "--kafka", "none", "--metrics-port", "0")
    try:
        _write_log(folder, name, 100, prefix="before")
        until(lambda: _count(es, index, query={"match": {"message": "before"}}) == 100, 60, "shipping before the outage")
        down(cfg, ["elasticsearch"])  # the node goes away
        _write_log(folder, name, 500, start=100, prefix="during")
        time.sleep(3)
        assert proc.poll() is None, "the shipper must keep running while Elasticsearch is down"
        up(cfg, ["elasticsearch"])
        es = _client(cfg)
        until(lambda: _count(es, index, query={"match": {"message": "during"}}) == 500, 120, "the catch-up")
    finally:
        err = _stop(proc)
    assert "retrying" in err  # it said it was waiting
    assert _count(es, index, query={"match": {"message": "before"}}) == 100


def test_retention_deletes_daily_indices_older_than_the_limit(stack):
    es = _client(stack)
    ensure_templates(es)
    old = (datetime.now(timezone.utc) - timedelta(days=20)).strftime("%Y.%m.%d")
    recent = (datetime.now(timezone.utc) - timedelta(days=2)).strftime("%Y.%m.%d")
    for day in (old, recent):
        es.index(index=f"{EVENTS}-{day}", id="x", document={"@timestamp": "2020-01-01T00:00:00Z", "message": "m"})
    assert es.indices.get_alias(index=f"{EVENTS}-{old}")[f"{EVENTS}-{old}"]["aliases"] == {EVENTS: {}}
    deleted = apply_retention(es, 14)
    assert f"{EVENTS}-{old}" in deleted and f"{EVENTS}-{recent}" not in deleted
    assert not es.indices.exists(index=f"{EVENTS}-{old}") and es.indices.exists(index=f"{EVENTS}-{recent}")


def test_the_stacks_log_shipper_service_ships_and_announces_its_metrics(stack):
    from hft.observability.discovery import targets_dir

    cfg = stack
    es = _client(cfg)
    try:
        result = up(cfg, ["logging"])
        assert set(result) == {"elasticsearch", "log-shipper"}
        subprocess.run([sys.executable, "-c", "import logging; from hft.observability.logging import configure_logging; "
                        "configure_logging(service='hft-svc-probe'); logging.getLogger('p').warning('via the service')"],
                       env=_env(cfg), check=True, timeout=60)
        until(lambda: search(es, Query(service="hft-svc-probe", text="service")), 60, "the service to ship the probe")
        announced = [p.name for p in targets_dir(cfg.home).glob("log-shipper-*.json")]
        assert announced, "the shipper's /metrics is announced to Prometheus"
    finally:
        down(cfg, ["log-shipper"])
    assert not list(targets_dir(cfg.home).glob("log-shipper-*.json"))  # removed at a clean exit
