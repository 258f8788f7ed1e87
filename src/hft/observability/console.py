"""The Prometheus console page ``/consoles/hft.html``: the Grafana dashboard (infra/grafana/hft-dashboard.json)
for those who do not run Grafana, rendered by Prometheus itself.

The page is generated from the dashboard's panels (one definition of every query: the dashboard's), as a
Go template Prometheus evaluates on each request: the firing alerts first, then per panel a table of each
query's current series with their values in the panel's unit. The stack's Prometheus writes it into its
``consoles/`` folder at start (:func:`write_console`); it refreshes itself every 10 s.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

#: Grafana's ``$__rate_interval`` on this page (four scrapes of 5 s, with margin).
RATE_INTERVAL = "1m"
_UNITS = {"s": "humanizeDuration", "percentunit": "humanizePercentage", "bytes": "humanize1024"}
_LEGEND_VAR = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")

_HEAD = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="10"><title>hft: live</title>
<style>
body { font-family: DejaVu Sans, sans-serif; margin: 1.5em; background: #fafafa; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; } h2 { font-size: 1.05em; margin: 0 0 0.4em 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(430px, 1fr)); gap: 1em; }
.panel { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 0.8em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
td { padding: 2px 6px; border-bottom: 1px solid #eee; } td.v { text-align: right; font-family: monospace; }
.none { color: #999; } .firing td { background: #fde2e1; } .ok { color: #1a7f37; }
.sub { color: #666; font-size: 0.85em; }
</style></head><body>
<h1>hft: live</h1>
<div class="sub">Rendered by Prometheus from infra/grafana/hft-dashboard.json at
{{ with query "time()" }}{{ . | first | value | humanizeTimestamp }}{{ end }}; refreshes every 10 s.
<a href="/classic/alerts">Alerts</a> &middot; <a href="/classic/targets">Targets</a> &middot;
<a href="/classic/graph">Graph</a></div>
"""

_ALERTS = """<div class="panel" style="margin: 1em 0"><h2>Firing alerts</h2><table>
{{ range query `sort(ALERTS{alertstate="firing"})` }}<tr class="firing"><td>{{ .Labels.alertname }}</td>
<td>{{ .Labels.severity }}</td><td>{{ .Labels.instance }}</td></tr>
{{ else }}<tr><td class="ok">none</td></tr>{{ end }}</table></div>
"""


def _legend(legend: str) -> str:
    """Grafana's ``{{label}}`` legend as Go template (label values escaped by the template engine)."""
    text = html.escape(legend or "")
    return _LEGEND_VAR.sub(lambda m: "{{ .Labels." + m.group(1) + " }}", text) or "{{ .Labels }}"


def render_console(dashboard: dict) -> str:
    """The console template of a Grafana dashboard (its JSON model, as a dict)."""
    parts = [_HEAD, _ALERTS, '<div class="grid">\n']
    for panel in dashboard.get("panels", []):
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "short")
        fmt = _UNITS.get(unit, "humanize")
        parts.append(f'<div class="panel"><h2>{html.escape(panel["title"])}</h2><table>\n')
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", RATE_INTERVAL)
            if "`" in expr:
                raise ValueError(f"panel {panel['title']!r}: a query with a backquote cannot go in the page: {expr}")
            parts.append("{{ range query `" + expr + "` }}<tr><td>" + _legend(target.get("legendFormat", ""))
                         + '</td><td class="v">{{ .Value | ' + fmt + " }}</td></tr>\n"
                         + '{{ else }}<tr><td class="none">'
                         + html.escape(_LEGEND_VAR.sub(r"<\1>", target.get("legendFormat") or expr))
                         + '</td><td class="v none">no data</td></tr>{{ end }}\n')
        parts.append("</table></div>\n")
    parts.append("</div></body></html>\n")
    return "".join(parts)


def write_console(dashboard_file: Path, folder: Path) -> Path:
    """Write ``hft.html`` (from the dashboard JSON) into ``folder``, Prometheus' ``--web.console.templates``."""
    folder.mkdir(parents=True, exist_ok=True)
    page = folder / "hft.html"
    tmp = page.with_suffix(".tmp")
    tmp.write_text(render_console(json.loads(dashboard_file.read_text())))
    tmp.replace(page)
    return page
