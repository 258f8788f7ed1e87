"""The Prometheus console page is the Grafana dashboard: every panel and query of it, Grafana's legends as Go
templates (label values escaped by the engine), units kept."""

from __future__ import annotations

import json

import pytest

from hft.observability.console import RATE_INTERVAL, render_console, write_console
from hft.stack import repo_root


def test_every_dashboard_query_is_on_the_page(tmp_path):
    dashboard_file = repo_root() / "infra" / "grafana" / "hft-dashboard.json"
    dashboard = json.loads(dashboard_file.read_text())
    page = write_console(dashboard_file, tmp_path).read_text()
    for panel in dashboard["panels"]:
        assert f"<h2>{panel['title'].replace('>', '&gt;')}</h2>" in page
        for target in panel["targets"]:
            assert "{{ range query `" + target["expr"].replace("$__rate_interval", RATE_INTERVAL) + "` }}" in page
    assert "$__rate_interval" not in page and "ALERTS{alertstate=\"firing\"}" in page


def test_legends_units_and_refusals():
    panel = {"title": "<b>lat</b>", "fieldConfig": {"defaults": {"unit": "s"}},
             "targets": [{"expr": "x", "legendFormat": "p99 {{stage}} <{{ job }}>"}, {"expr": "y"}]}
    page = render_console({"panels": [panel]})
    assert "<h2>&lt;b&gt;lat&lt;/b&gt;</h2>" in page
    assert "<td>p99 {{ .Labels.stage }} &lt;{{ .Labels.job }}&gt;</td>" in page
    assert "{{ .Value | humanizeDuration }}" in page
    assert "p99 &lt;stage&gt;" in page  # the no-data row names the series without template syntax
    assert "<td>{{ .Labels }}</td>" in page  # no legend: the labels
    with pytest.raises(ValueError, match="backquote"):
        render_console({"panels": [{"title": "t", "targets": [{"expr": "a`b"}]}]})
