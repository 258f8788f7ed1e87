"""The streaming job's spark-submit command line: the driver JVM's metrics agent joins the project's own driver
options (a separate --driver-java-options would be overridden by them), and Spark's JmxSink is on."""

from __future__ import annotations

from pathlib import Path

from hft.spark_submit import stream_job_command
from hft.stack import StackConfig


def _confs(cmd: list[str]) -> dict[str, str]:
    return dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "--conf")


def test_jvm_metrics_port_adds_the_jmx_agent_to_the_driver_options(tmp_path: Path):
    cfg = StackConfig(run_dir=tmp_path / "run")
    cmd = stream_job_command(cfg, jvm_metrics_port=9555)
    confs = _confs(cmd)
    driver = confs["spark.driver.extraJavaOptions"]
    assert "-XX:-DontCompileHugeMethods" in driver  # ours kept
    assert "-javaagent:" in driver and "jmx_prometheus_javaagent" in driver and "=127.0.0.1:9555:" in driver
    assert driver.endswith("infra/prometheus/jmx/spark.yml")
    assert confs["spark.metrics.conf.*.sink.jmx.class"] == "org.apache.spark.metrics.sink.JmxSink"
    assert "--driver-java-options" not in cmd
    assert cmd[cmd.index("--jvm-metrics-port") + 1] == "9555"  # the job announces it to Prometheus


def test_without_a_jvm_metrics_port_no_agent(tmp_path: Path):
    cmd = stream_job_command(StackConfig(run_dir=tmp_path / "run"))
    assert "-javaagent" not in " ".join(cmd) and "--jvm-metrics-port" not in cmd
