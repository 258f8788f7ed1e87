"""The alert rules and the Prometheus config, checked and unit-tested by promtool (no server started)."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from hft.stack import StackConfig
from hft.stack.config import infra_file
from hft.stack.monitoring import Prometheus

PROMTOOL = shutil.which("promtool") or "promtool"  # Debian's prometheus package, installed by make setup
RULES = infra_file("prometheus", "rules", "hft.yml")


def _promtool(*args: str) -> str:
    proc = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_rules_are_valid_and_each_has_a_runbook_and_a_severity():
    assert "SUCCESS" in _promtool("check", "rules", str(RULES))
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    assert len(rules) >= 10
    for rule in rules:
        assert rule["annotations"].get("runbook") and rule["annotations"].get("summary"), rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]


def test_every_alert_fires_in_the_rule_unit_tests():
    tests = infra_file("prometheus", "tests", "hft_test.yml")
    assert "SUCCESS" in _promtool("test", "rules", str(tests))
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    fired = {case["alertname"] for t in yaml.safe_load(tests.read_text())["tests"]
             for case in t["alert_rule_test"] if case["exp_alerts"]}
    assert alerts == fired  # no rule without a test that makes it fire


def test_the_rendered_server_config_is_valid(tmp_path):
    cfg = StackConfig(run_dir=tmp_path / "run", home=tmp_path)
    argv, _ = Prometheus(cfg).prepare()  # renders and runs `promtool check config`
    assert f"--web.listen-address=127.0.0.1:{cfg.prometheus_port}" in argv
    config = yaml.safe_load((tmp_path / "run" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "node", "redis", "kafka", "mlflow", "hft"}
    assert jobs["hft"]["file_sd_configs"][0]["files"] == [f"{tmp_path / 'run' / 'prometheus' / 'targets'}/*.json"]
    assert all(t.startswith("127.0.0.1:") for job in config["scrape_configs"]
               for sc in job.get("static_configs", []) for t in sc["targets"])
