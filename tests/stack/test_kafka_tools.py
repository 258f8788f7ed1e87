"""infra/kafka/bin/kafka: Kafka's own CLI (kafka-tools jar) against the stack's real broker on a free port."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from hft.kafka_conn import client_config
from hft.stack import down, ensure_topics, stream_topics, up
from hft.streaming.messages import BARS_TOPIC, DLQ_TOPIC
from ports import stack_home

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "infra" / "kafka" / "bin" / "kafka"
BARS = {0: [b'{"ticker":"AAA","close":1.0}', b'{"ticker":"AAA","close":2.0}', b'{"ticker":"AAA","close":3.0}'],
        1: [b'{"ticker":"BBB","close":4.0}', b'{"ticker":"BBB","close":5.0}']}
COMMITTED = {0: 1, 1: 2}  # the group's next offset per partition: lag 2 on partition 0, 0 on partition 1


@pytest.fixture(scope="module")
def kafka(tmp_path_factory, make_stack_config):
    """The stack's broker with the stream's topics, a few bars on ``market.bars`` and a group's committed offsets."""
    from confluent_kafka import Consumer, Producer, TopicPartition

    cfg = make_stack_config(tmp_path_factory.mktemp("kafka-tools"))
    home = stack_home(cfg)
    home.__enter__()  # the tools find the stack user's password under HFT_HOME, as hft does
    try:
        up(cfg, ["kafka"])
        ensure_topics(cfg.kafka_bootstrap, stream_topics())
        producer = Producer(client_config(cfg.kafka_bootstrap, {"acks": "all"}))
        for partition, values in BARS.items():
            for v in values:
                producer.produce(BARS_TOPIC, key=b"AAA" if partition == 0 else b"BBB", value=v, partition=partition)
        assert producer.flush(15) == 0
        group = f"tools-{uuid.uuid4().hex[:8]}"
        consumer = Consumer(client_config(cfg.kafka_bootstrap, {"group.id": group, "enable.auto.commit": False}))
        try:
            commit_retrying(consumer, [TopicPartition(BARS_TOPIC, p, o) for p, o in COMMITTED.items()])
        finally:
            consumer.close()
        yield cfg, group
    finally:
        down(cfg)
        home.__exit__(None, None, None)


def commit_retrying(consumer, offsets, timeout: float = 60.0) -> None:
    """Commit ``offsets``; the broker's first group request creates ``__consumer_offsets``, and until that has a
    leader the commit fails with a retriable error (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS, ...)."""
    from confluent_kafka import KafkaError, KafkaException

    transient = {KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_NOT_AVAILABLE,
                 KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TIMED_OUT, KafkaError._TRANSPORT}
    deadline = time.monotonic() + timeout
    while True:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            return
        except KafkaException as e:
            err = e.args[0]
            if not (err.retriable() or err.code() in transient) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def kafka_cli(*args: str, port: int | None, cwd: Path, stdin: str | None = None,
              env: dict[str, str] | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    """Run the wrapper from ``cwd`` (not the repository: it finds its jars from its own place)."""
    run_env = {k: v for k, v in os.environ.items() if k not in ("HFT_KAFKA_PORT", "HFT_KAFKA_LIBS")}
    if port is not None:
        run_env["HFT_KAFKA_PORT"] = str(port)
    run_env.update(env or {})
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=cwd, env=run_env,
                          input=stdin, timeout=timeout)


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc.stdout


def test_topics_list_and_describe(kafka, tmp_path):
    cfg, _ = kafka
    listed = ok(kafka_cli("topics", "--list", port=cfg.kafka_port, cwd=tmp_path)).split()
    assert {BARS_TOPIC, DLQ_TOPIC, "predictions"} <= set(listed), listed

    out = ok(kafka_cli("topics", "--describe", "--topic", BARS_TOPIC, port=cfg.kafka_port, cwd=tmp_path))
    assert re.search(rf"Topic: {re.escape(BARS_TOPIC)}\s.*PartitionCount: 2\s", out), out
    partitions = re.findall(rf"Topic: {re.escape(BARS_TOPIC)}\s+Partition: (\d+)\s+Leader: (\d+)", out)
    assert sorted(int(p) for p, _ in partitions) == [0, 1], out
    assert "retention.ms=604800000" in out, out


def test_the_tools_log_in_as_the_stack_user_and_a_wrong_password_is_refused(kafka, tmp_path):
    cfg, _ = kafka
    password = (cfg.home / "secrets" / "kafka-password").read_text().strip()
    # the password went to the tool in a file, removed after: not on its command line, not left behind
    proc = kafka_cli("topics", "--list", port=cfg.kafka_port, cwd=tmp_path, env={"TMPDIR": str(tmp_path)})
    assert BARS_TOPIC in ok(proc).split() and list(tmp_path.iterdir()) == []
    wrong = kafka_cli("topics", "--list", port=cfg.kafka_port, cwd=tmp_path,
                      env={"HFT_KAFKA_PASSWORD": password + "x"})
    assert wrong.returncode != 0 and BARS_TOPIC not in wrong.stdout
    assert "Authentication failed" in wrong.stdout + wrong.stderr, wrong.stderr[-2000:]


def test_explicit_bootstrap_server_wins(kafka, tmp_path):
    # HFT_KAFKA_PORT points nowhere: the user's --bootstrap-server (the `=` form too) is used, not doubled.
    cfg, _ = kafka
    out = ok(kafka_cli("topics", f"--bootstrap-server={cfg.kafka_bootstrap}", "--list", port=1, cwd=tmp_path))
    assert BARS_TOPIC in out.split()


def test_consumer_groups_list_and_describe_with_lag(kafka, tmp_path):
    cfg, group = kafka
    assert group in ok(kafka_cli("consumer-groups", "--list", port=cfg.kafka_port, cwd=tmp_path)).split()

    out = ok(kafka_cli("consumer-groups", "--describe", "--group", group, port=cfg.kafka_port, cwd=tmp_path))
    rows = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 6 and cols[0] == group and cols[1] == BARS_TOPIC:
            rows[int(cols[2])] = (int(cols[3]), int(cols[4]), int(cols[5]))  # current, log end, lag
    assert rows == {p: (COMMITTED[p], len(BARS[p]), len(BARS[p]) - COMMITTED[p]) for p in BARS}, out


def test_console_consumer_prints_messages(kafka, tmp_path):
    cfg, _ = kafka
    n = sum(len(v) for v in BARS.values())
    proc = kafka_cli("console-consumer", "--topic", BARS_TOPIC, "--from-beginning", "--max-messages", str(n),
                     "--timeout-ms", "30000", port=cfg.kafka_port, cwd=tmp_path)
    out = ok(proc)
    assert sorted(out.split()) == sorted(v.decode() for values in BARS.values() for v in values), out
    assert f"Processed a total of {n} messages" in proc.stderr  # the tool's summary goes to stderr, not stdout


def test_console_producer_then_tail_the_dlq_and_get_offsets(kafka, tmp_path):
    cfg, _ = kafka
    lines = [f"bad-{uuid.uuid4().hex[:6]}" for _ in range(2)]
    ok(kafka_cli("console-producer", "--topic", DLQ_TOPIC, port=cfg.kafka_port, cwd=tmp_path,
                 stdin="\n".join(lines) + "\n"))
    out = ok(kafka_cli("console-consumer", "--topic", DLQ_TOPIC, "--from-beginning", "--max-messages", "2",
                       "--timeout-ms", "30000", port=cfg.kafka_port, cwd=tmp_path))
    assert out.split() == lines

    out = ok(kafka_cli("get-offsets", "--topic", BARS_TOPIC, port=cfg.kafka_port, cwd=tmp_path))
    assert sorted(out.split()) == [f"{BARS_TOPIC}:{p}:{len(v)}" for p, v in sorted(BARS.items())], out


def test_missing_tools_jar_says_run_make_setup(tmp_path):
    t0 = time.monotonic()
    proc = kafka_cli("topics", "--list", port=None, cwd=tmp_path, env={"HFT_KAFKA_LIBS": str(tmp_path)})
    assert proc.returncode != 0
    assert "kafka-tools" in proc.stderr and str(tmp_path) in proc.stderr and "make setup" in proc.stderr
    assert proc.stdout == ""
    assert time.monotonic() - t0 < 5  # no JVM was started


def test_usage_and_unknown_subcommand(tmp_path):
    proc = kafka_cli("--help", port=None, cwd=tmp_path)
    assert proc.returncode == 0
    for sub in ("topics", "consumer-groups", "console-consumer", "console-producer", "get-offsets"):
        assert sub in proc.stdout
    proc = kafka_cli("no-such-tool", port=None, cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown subcommand 'no-such-tool'" in proc.stderr
