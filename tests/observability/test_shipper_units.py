"""The shipper's parts that need no server: documents from log lines and Kafka records, file positions,
correlation ids, index names, retention and the search query."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from hft.errors import UserError
from hft.observability.elastic import EVENTS, LOGS, Query, build_query, index_for, templates
from hft.observability.shipper import Batch, FileSource, Positions, event_document, log_document
from hft.schemas import Prediction, correlation_id
from hft.streaming.messages import BarMessage, encode_bar, message_correlation_id

BAR_START_MS = 1_709_908_200_000  # 2024-03-08T14:30:00Z
BAR_END_MS = BAR_START_MS + 60_000


def test_correlation_id_is_the_same_for_a_bar_its_prediction_and_its_order():
    bar = BarMessage("SPY", "1m", BAR_START_MS, 1, 1, 1, 1, 5)
    pred = Prediction("SPY", "1m", BAR_START_MS, 0.6, "3", None, 0)
    assert bar.correlation_id == pred.correlation_id == correlation_id("spy", BAR_END_MS * 1_000_000) \
        == f"SPY@{BAR_END_MS}"
    assert message_correlation_id(json.loads(encode_bar(bar))) == bar.correlation_id
    five = BarMessage("SPY", "5m", BAR_START_MS, 1, 1, 1, 1, 5)
    assert five.correlation_id == f"SPY@{BAR_START_MS + 300_000}"


@pytest.mark.parametrize("body", [None, [], "x", {}, {"ticker": 1, "ts": BAR_START_MS}, {"ticker": "SPY"},
                                  {"ticker": "SPY", "ts": "yesterday"}, {"ticker": "SPY", "ts": 10**40},
                                  {"ticker": "SPY", "ts": True}, {"ticker": "SPY;DROP", "ts": BAR_START_MS},
                                  {"ticker": "SPY", "ts": BAR_START_MS, "interval": "7h"}])
def test_correlation_id_of_hostile_messages_is_none_not_an_error(body):
    assert message_correlation_id(body) is None


def test_log_document_keeps_ecs_lines_and_wraps_anything_else():
    line = json.dumps({"@timestamp": "2026-12-03T10:00:00.123Z", "log.level": "warning", "message": "m",
                       "service": {"name": "hft-stream"}, "trace": {"id": "SPY@1"}}).encode()
    doc = log_document(line, "hft-stream-20261203T100000-42.json", 128)
    assert doc["message"] == "m" and doc["trace"] == {"id": "SPY@1"} and doc["event"]["dataset"] == "hft.log"
    assert doc["log.offset"] == 128 and doc["log.file.path"] == "hft-stream-20261203T100000-42.json"
    assert index_for(LOGS, doc["@timestamp"]) == "hft-logs-2026.12.03"
    for bad in (b"not json \xff", b"[1,2]", b'{"@timestamp": "yesterday"}', b'{"message": "no time"}'):
        doc = log_document(bad, "hft-execute-20261203T100000-7.json", 0)
        assert doc["service"]["name"] == "hft-execute"
        assert "unparsed" in doc["error"]["message"] and doc["message"]
        index_for(LOGS, doc["@timestamp"])  # the wall clock's day: indexable


def test_event_documents_carry_reason_and_correlation():
    bar = encode_bar(BarMessage("QQQ", "1m", BAR_START_MS, 1, 1, 1, 1, 5)).decode()
    dlq = json.dumps({"schema": "hft.dlq", "version": 1, "reason": "implausible_time", "detail": "ahead",
                      "topic": "market.bars", "partition": 0, "offset": 7, "key": "QQQ", "value": bar}).encode()
    doc = event_document("market.bars.dlq", 0, 3, b"QQQ", dlq, BAR_END_MS)
    assert doc["event"] == {"dataset": "hft.dlq", "kind": "event", "reason": "implausible_time"}
    assert doc["trace"]["id"] == f"QQQ@{BAR_END_MS}" and "ahead" in doc["message"]
    assert doc["hft"]["kafka"] == {"topic": "market.bars.dlq", "partition": 0, "offset": 3, "key": "QQQ"}
    assert doc["@timestamp"] == "2024-03-08T14:31:00.000Z"
    order = json.dumps({"seq": 4, "type": "fill", "ticker": "QQQ", "order_id": 9, "qty": -3, "price": 1.5,
                        "correlation_id": f"QQQ@{BAR_END_MS}"}).encode()
    doc = event_document("orders", 0, 1, b"QQQ", order, BAR_END_MS + 5)
    assert doc["event"]["action"] == "fill" and doc["trace"]["id"] == f"QQQ@{BAR_END_MS}"
    assert "correlation_id" not in doc["hft"] and doc["hft"]["qty"] == -3


@pytest.mark.parametrize("value", [None, b"", b"\xff\xfe", b"[1]", b'"str"', b'{"ticker": {"$gt": 1}}',
                                   b'{"ts": 99999999999999999999999999999}', json.dumps({"value": "{"}).encode()])
def test_event_document_of_hostile_records(value):
    for topic in ("market.bars", "market.bars.dlq", "predictions", "orders", "other"):
        doc = event_document(topic, 0, 1, b"\xff" * 300, value, BAR_END_MS)
        json.dumps(doc)  # serialisable
        assert doc["hft"]["kafka"]["offset"] == 1 and len(doc["hft"]["kafka"]["key"]) <= 256
        assert "id" not in doc.get("trace", {}) or isinstance(doc["trace"]["id"], str)


def test_file_source_ships_whole_lines_only_and_resumes_from_positions(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    f = logs / "hft-a-20261203T000000-1.json"
    lines = [json.dumps({"@timestamp": "2026-12-03T00:00:00Z", "message": f"m{i}"}) for i in range(5)]
    f.write_text("\n".join(lines[:3]) + "\n" + lines[3][:10])  # the fourth still being written
    positions = Positions(tmp_path / "pos.json")
    source = FileSource(logs, positions)
    batch = Batch()
    source.read(batch, max_docs=100)
    assert [a["_source"]["message"] for a in batch.actions] == ["m0", "m1", "m2"]
    assert source.behind() == len(lines[3][:10]) + sum(len(line) + 1 for line in lines[:3])
    source.commit(batch)
    assert Positions(tmp_path / "pos.json").offsets == {f.name: sum(len(line) + 1 for line in lines[:3])}
    with open(f, "a") as fh:
        fh.write(lines[3][10:] + "\n" + lines[4] + "\n")
    again = FileSource(logs, Positions(tmp_path / "pos.json"))  # a new process after kill -9
    batch2 = Batch()
    again.read(batch2, max_docs=100)
    assert [a["_source"]["message"] for a in batch2.actions] == ["m3", "m4"]
    ids = {a["_id"] for a in batch.actions + batch2.actions}
    assert len(ids) == 5
    # read again without committing: the same ids (a resend replaces, never duplicates)
    batch3 = Batch()
    again.read(batch3, max_docs=100)
    assert [a["_id"] for a in batch3.actions] == [a["_id"] for a in batch2.actions]


def test_file_source_respects_max_docs_and_a_truncated_file(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    f = logs / "x-20261203T000000-1.json"
    f.write_text("".join(json.dumps({"@timestamp": "2026-12-03T00:00:00Z", "message": str(i)}) + "\n"
                         for i in range(10)))
    source = FileSource(logs, Positions(tmp_path / "p.json"))
    batch = Batch()
    source.read(batch, max_docs=4)
    assert len(batch.actions) == 4
    source.commit(batch)
    f.write_text(json.dumps({"@timestamp": "2026-12-03T00:00:00Z", "message": "new"}) + "\n")
    batch = Batch()
    source.read(batch, max_docs=100)
    assert [a["_source"]["message"] for a in batch.actions] == ["new"]


def test_positions_file_that_is_not_one_is_a_clear_error(tmp_path):
    p = tmp_path / "pos.json"
    p.write_text("[1, 2]")
    with pytest.raises(ValueError, match="not a positions file"):
        Positions(p)


def test_index_for_refuses_what_is_not_a_date():
    assert index_for(EVENTS, "2024-03-08T14:31:00Z") == "hft-events-2024.03.08"
    for bad in ("", "2024", "03/08/2024 14:31", "abcd-ef-ghT"):
        with pytest.raises(ValueError):
            index_for(EVENTS, bad)


def test_templates_map_the_searched_fields():
    t = templates()
    for family in (LOGS, EVENTS):
        props = t[family]["template"]["mappings"]["properties"]
        assert props["trace"]["properties"]["id"]["type"] == "keyword"
        assert props["service"]["properties"]["name"]["type"] == "keyword"
        assert props["log"]["properties"]["level"]["type"] == "keyword"
        assert t[family]["template"]["settings"]["number_of_replicas"] == 0
    assert t[EVENTS]["template"]["mappings"]["properties"]["hft"]["properties"]["reason"]["type"] == "keyword"


def test_build_query():
    now = datetime(2026, 12, 3, 12, tzinfo=timezone.utc)
    q = build_query(Query(text="kill switch", service="hft-execute", level="warning", since="2h",
                          correlation_id="SPY@1", dataset="hft.order", reason="stale"), now=now)
    filters = q["bool"]["filter"]
    assert {"terms": {"log.level": ["warning", "error", "critical"]}} in filters
    assert {"range": {"@timestamp": {"gte": "2026-12-03T10:00:00+00:00"}}} in filters
    assert {"term": {"trace.id": "SPY@1"}} in filters
    assert q["bool"]["must"][0]["multi_match"]["query"] == "kill switch"
    assert build_query(Query())["bool"] == {"must": [{"match_all": {}}], "filter": []}
    with pytest.raises(UserError, match="level"):
        build_query(Query(level="loud"))
    with pytest.raises(UserError, match="ISO-8601"):
        build_query(Query(since="last tuesday"))


def test_retention_days_from_the_environment(monkeypatch):
    from hft.observability.elastic import retention_days

    monkeypatch.delenv("HFT_LOG_RETENTION_DAYS", raising=False)
    assert retention_days() == 14
    monkeypatch.setenv("HFT_LOG_RETENTION_DAYS", "0")
    with pytest.raises(UserError, match="HFT_LOG_RETENTION_DAYS must be at least 1"):
        retention_days()
