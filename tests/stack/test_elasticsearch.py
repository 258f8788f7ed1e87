"""The stack's Elasticsearch 9.5 node: configuration and groups (no service), then a real node on free loopback
ports started once for this module (``up(cfg, ["logging"])``), used through the Python client, and stopped."""

from __future__ import annotations

import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hft.stack import (
    ALL_SERVICES,
    LOGGING_SERVICES,
    StackConfig,
    StackError,
    down,
    expand_services,
    listening,
    status,
    up,
)
from hft.stack import elasticsearch as es_service
from hft.stack.process import alive, read_pid
from ports import make_stack_config

integration = pytest.mark.integration


# -- configuration: no service ---------------------------------------------------------------------------------
def test_config_defaults_env_and_url(monkeypatch, tmp_path):
    for var in ("HFT_ELASTICSEARCH_PORT", "HFT_ELASTICSEARCH_TRANSPORT_PORT", "HFT_ELASTICSEARCH_HEAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HFT_HOME", str(tmp_path))
    cfg = StackConfig.from_env()
    assert (cfg.elasticsearch_port, cfg.elasticsearch_transport_port, cfg.elasticsearch_heap) == (9200, 9300, "1g")
    assert cfg.elasticsearch_url == "http://127.0.0.1:9200"

    monkeypatch.setenv("HFT_ELASTICSEARCH_PORT", "19200")
    monkeypatch.setenv("HFT_ELASTICSEARCH_TRANSPORT_PORT", "19300")
    monkeypatch.setenv("HFT_ELASTICSEARCH_HEAP", "512m")
    cfg = StackConfig.from_env()
    assert (cfg.elasticsearch_port, cfg.elasticsearch_transport_port, cfg.elasticsearch_heap) == (19200, 19300, "512m")
    assert cfg.elasticsearch_url == "http://127.0.0.1:19200"

    monkeypatch.setenv("HFT_ELASTICSEARCH_TRANSPORT_PORT", "transport")
    with pytest.raises(StackError, match="HFT_ELASTICSEARCH_TRANSPORT_PORT"):
        StackConfig.from_env()


def test_the_new_ports_are_covered_by_the_uniqueness_check(tmp_path):
    with pytest.raises(StackError, match="share a port"):
        StackConfig(run_dir=tmp_path, elasticsearch_port=9092)  # Kafka's
    with pytest.raises(StackError, match="share a port"):
        StackConfig(run_dir=tmp_path, elasticsearch_port=9400, elasticsearch_transport_port=9400)


def test_the_logging_group(tmp_path):
    assert LOGGING_SERVICES == ("elasticsearch", "log-shipper")
    assert expand_services(["logging"]) == ("elasticsearch", "log-shipper")
    assert {"elasticsearch", "log-shipper"} <= set(expand_services(["all"]))
    assert ALL_SERVICES[-2:] == ("elasticsearch", "log-shipper")
    cfg = make_stack_config(tmp_path)
    ports = [getattr(cfg, f) for f in vars(cfg) if f.endswith("_port")]
    assert len(set(ports)) == len(ports) and cfg.elasticsearch_port != 9200


def test_min_heap():
    assert es_service.min_heap("1g") == "256m"
    assert es_service.min_heap("128m") == "128m"
    assert es_service.min_heap("256m") == "256m"


def test_a_missing_install_or_a_bad_heap_starts_nothing(tmp_path, monkeypatch):
    cfg = make_stack_config(tmp_path)
    monkeypatch.setattr(es_service, "es_home", lambda: tmp_path / "nowhere")
    with pytest.raises(StackError, match="make setup"):
        up(cfg, ["elasticsearch"])
    assert not (cfg.run_dir / "elasticsearch.pid").exists()
    monkeypatch.undo()
    from dataclasses import replace

    with pytest.raises(StackError, match="HFT_ELASTICSEARCH_HEAP"):
        up(replace(cfg, elasticsearch_heap="lots"), ["elasticsearch"])
    assert not (cfg.run_dir / "elasticsearch.pid").exists()


# -- a real node -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def node(tmp_path_factory):
    from elasticsearch import Elasticsearch

    cfg = make_stack_config(tmp_path_factory.mktemp("elasticsearch"))
    client = None
    try:
        t0 = time.monotonic()
        started = up(cfg, ["logging"])
        started["_seconds"] = f"{time.monotonic() - t0:.1f}"
        client = Elasticsearch(cfg.elasticsearch_url, request_timeout=30)
        yield cfg, started, client
    finally:
        if client is not None:
            client.close()
        down(cfg)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


@integration
def test_up_starts_a_healthy_node(node):
    cfg, started, client = node
    assert started["elasticsearch"].startswith("started"), started
    st = status(cfg)["elasticsearch"]
    assert st.running and st.healthy, st
    assert st.address == cfg.elasticsearch_url
    assert "cluster hft green" in st.detail
    health = client.cluster.health(wait_for_status="yellow", timeout="30s")
    assert health["status"] in ("green", "yellow") and health["number_of_nodes"] == 1
    assert (cfg.run_dir / "elasticsearch" / "config" / "elasticsearch.yml").is_file()
    assert (cfg.run_dir / "elasticsearch" / "data").is_dir()
    log = (cfg.run_dir / "elasticsearch.log").read_text()
    assert "loaded module [transport-netty4]" in log and "HftElasticsearchNode" in log
    assert st.pid is not None and _rss_mb(st.pid) < 1500


@integration
def test_up_is_idempotent(node):
    cfg = node[0]
    pid = read_pid(cfg.run_dir / "elasticsearch.pid")
    again = up(cfg, ["elasticsearch"])
    assert again["elasticsearch"].startswith("already running"), again
    assert read_pid(cfg.run_dir / "elasticsearch.pid") == pid


@integration
def test_index_a_document_and_search_it_back(node):
    client = node[2]
    client.indices.create(index="hft-orders", settings={"number_of_shards": 1, "number_of_replicas": 0,
                                                        "index.codec": "best_compression"})  # zstd: libzstd
    doc = {"order_id": "o-1", "ticker": "AAA", "side": "buy", "qty": 10, "price": 101.25,
           "note": "opening order on the synthetic market"}
    client.index(index="hft-orders", id="o-1", document=doc, refresh="wait_for")
    client.indices.flush(index="hft-orders")
    hits = client.search(index="hft-orders", query={"match": {"note": "synthetic"}})["hits"]
    assert hits["total"]["value"] == 1
    assert hits["hits"][0]["_source"] == doc
    assert client.get(index="hft-orders", id="o-1")["_source"]["price"] == 101.25


@integration
def test_a_daily_index_template_applies(node):
    from elasticsearch import helpers

    client = node[2]
    client.indices.put_index_template(
        name="hft-logs", index_patterns=["hft-logs-*"],
        template={"settings": {"number_of_shards": 1, "number_of_replicas": 0},
                  "mappings": {"properties": {"@timestamp": {"type": "date"}, "message": {"type": "text"},
                                              "log.level": {"type": "keyword"}}}})
    index = f"hft-logs-{datetime.now(UTC):%Y.%m.%d}"
    now = datetime.now(UTC).isoformat()
    run = uuid.uuid4().hex  # the group's log shipper writes its own lines to today's index too: count only ours
    actions = [{"_index": index, "_source": {"@timestamp": now, "message": f"bar {i} processed {run}",
                                             "log": {"level": "error" if i % 4 == 0 else "info"}}}
               for i in range(20)]
    ok, errors = helpers.bulk(client, actions, refresh="wait_for")
    assert (ok, errors) == (20, [])
    mapping = client.indices.get_mapping(index=index)[index]["mappings"]["properties"]
    assert mapping["log"]["properties"]["level"]["type"] == "keyword"
    assert mapping["@timestamp"]["type"] == "date"
    assert client.indices.get_settings(index=index)[index]["settings"]["index"]["number_of_replicas"] == "0"
    aggs = client.search(index="hft-logs-*", size=0, query={"match": {"message": run}},
                         aggs={"levels": {"terms": {"field": "log.level"}}})["aggregations"]
    assert {b["key"]: b["doc_count"] for b in aggs["levels"]["buckets"]} == {"info": 15, "error": 5}
    assert sum(1 for _ in helpers.scan(client, index=index, query={"query": {"match": {"message": run}}})) == 20
    assert client.cluster.health()["status"] == "green"  # no replica waits for a second node


@integration
def test_the_node_listens_only_on_loopback(node):
    cfg = node[0]
    sockets = listening(cfg)["elasticsearch"]
    assert ("127.0.0.1", cfg.elasticsearch_port) in sockets, sockets
    assert ("127.0.0.1", cfg.elasticsearch_transport_port) in sockets, sockets
    assert all(addr == "127.0.0.1" for addr, _ in sockets), sockets


@integration
def test_down_stops_it_and_leaves_nothing_running(node):
    cfg = node[0]
    pid = read_pid(cfg.run_dir / "elasticsearch.pid")
    assert pid is not None
    result = down(cfg, ["logging"])
    assert result["elasticsearch"].startswith("stopped"), result
    assert not alive(pid)
    assert not (cfg.run_dir / "elasticsearch.pid").exists()
    config_dir = str(cfg.run_dir / "elasticsearch" / "config")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert config_dir not in cmdline, f"pid {entry} still runs the node: {cmdline[:200]}"
    st = status(cfg)["elasticsearch"]
    assert not st.running and not st.healthy
    assert down(cfg, ["elasticsearch"]) == {"elasticsearch": "not running"}
