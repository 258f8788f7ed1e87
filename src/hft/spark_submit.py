"""Run the project's Spark entry points with ``spark-submit``: the feature job (batch) and the streaming job.

Each command line uses the project's Python on driver and executors and binds Spark to loopback
(:data:`hft.config.SPARK_LOCAL_CONF`). Used by the ``hft`` command, the demo and the DAGs' tasks alike.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from datetime import date
from pathlib import Path

from hft.config import SPARK_LOCAL_CONF, SPARK_LOCAL_ENV, join_uri
from hft.errors import JobError, UserError
from hft.stack.config import repo_root

log = logging.getLogger(__name__)

FEATURE_JOB = "jobs/volatility_features.py"
STREAM_JOB = "streaming/predict_stream.py"


def spark_submit_command(script: str, job_args: list[str], master: str, jars: list[str] | None = None,
                         driver_java_options: str | None = None) -> list[str]:
    """``spark-submit`` of a repository script (``jobs/x.py``, ``streaming/y.py``) with the project's Python
    on driver and executors, bound to loopback; ``driver_java_options`` are added to the driver JVM's."""
    binary = Path(sys.executable).with_name("spark-submit")
    submit = str(binary) if binary.exists() else shutil.which("spark-submit")
    if not submit:
        raise UserError("spark-submit not found: run `make setup` (it installs pyspark into .venv)")
    path = repo_root() / script
    if not path.exists():
        raise UserError(f"script not found: {path} (set HFT_REPO_ROOT to the checkout)")
    conf = dict(SPARK_LOCAL_CONF)
    address = local_address()  # a cluster's executors on other hosts call the driver back there
    conf.update({"spark.driver.host": address, "spark.driver.bindAddress": address})
    if driver_java_options:  # with ours: a separate --driver-java-options would be overridden by the --conf
        conf["spark.driver.extraJavaOptions"] = f"{conf['spark.driver.extraJavaOptions']} {driver_java_options}"
    login: list[str] = []
    if master.startswith("spark://"):  # the stack's standalone cluster lets in only who knows its secret
        from hft.stack import StackConfig
        from hft.stack.spark_cluster import auth_properties

        login = ["--properties-file", str(auth_properties(StackConfig.from_env()))]
    return [
        submit, "--master", master, *login,
        *(["--jars", ",".join(jars)] if jars else []),
        "--conf", f"spark.pyspark.python={sys.executable}",
        "--conf", "spark.sql.session.timeZone=UTC",
        "--conf", "spark.ui.showConsoleProgress=false",
        *(arg for key, value in conf.items() for arg in ("--conf", f"{key}={value}")),
        str(path), *job_args,
    ]


def local_address() -> str:
    """The address this machine's Spark drivers bind: its host's in the hosts file (``HFT_HOSTS_FILE`` and
    ``HFT_HOST``), else 127.0.0.1."""
    from hft.stack.hosts import HOSTS_FILE_ENV

    if not os.environ.get(HOSTS_FILE_ENV):
        return SPARK_LOCAL_ENV["SPARK_LOCAL_IP"]
    from hft.stack import StackConfig

    return StackConfig.from_env().local_address


def spark_env() -> dict[str, str]:
    return {**os.environ, **SPARK_LOCAL_ENV, "SPARK_LOCAL_IP": local_address(), "PYSPARK_PYTHON": sys.executable}


def run_spark_job(script: str, job_args: list[str], master: str) -> None:
    """Run a batch job to its end; :class:`JobError` with the job's last ``error:`` line if it fails."""
    cmd = spark_submit_command(script, job_args, master)
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=spark_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # spark-submit sends the Python driver's output to stdout
    lines = (proc.stdout + "\n" + proc.stderr).splitlines()
    if proc.returncode != 0:  # the job's last word is "error: ..."
        tail = [line for line in lines if line.startswith("error:")]
        detail = tail[-1][len("error: "):] if tail else "\n".join(proc.stderr.splitlines()[-15:])
        raise JobError(f"spark job {script} failed (exit {proc.returncode}): {detail}")
    for line in lines:  # the job's own warnings reach the user
        if line.startswith("{") and '"log.level":"warning"' in line:
            sys.stderr.write(line + "\n")


def run_feature_job(lake_root: str, master: str, interval: str = "1m", output: str | None = None,
                    start: date | None = None, end: date | None = None, tickers: list[str] | None = None) -> str:
    """The Spark volatility-features job on the lake's bars; returns the feature table root it wrote."""
    output = output or join_uri(lake_root, "features")
    job_args = ["--input", join_uri(lake_root, "bars"), "--output", output, "--interval", interval]
    if start:
        job_args += ["--start", start.isoformat()]
    if end:
        job_args += ["--end", end.isoformat()]
    if tickers:
        job_args += ["--tickers", ",".join(tickers)]
    run_spark_job(FEATURE_JOB, job_args, master)
    return output


def stream_job_command(config, master: str = "local[2]", tickers: list[str] | None = None,
                       trigger: str = "100 milliseconds", checkpoint: str | None = None, metrics_port: int = 0,
                       stop_when_idle: float = 0.0, max_offsets: int = 20000, jvm_metrics_port: int = 0,
                       engine: str = "driver", state_partitions: int = 4) -> list[str]:
    """The streaming job's ``spark-submit`` command against the stack ``config`` (a StackConfig).
    ``jvm_metrics_port`` (0: off): the driver JVM runs the Prometheus JMX exporter agent there, with Spark's
    metrics (the streaming query's rates and latency, the JVM's) exported through Spark's JmxSink."""
    from hft.stack import streaming_jars
    from hft.stack.config import infra_file
    from hft.stack.services import jmx_agent

    job_args = ["--bootstrap", config.kafka_bootstrap, "--redis", config.redis_url,
                # each engine its own checkpoint: the tasks engine's holds its state store, the driver's only offsets
                "--checkpoint", str(checkpoint or config.run_dir / "checkpoints" /
                                    ("predict_stream" if engine == "driver" else f"predict_stream_{engine}")),
                "--trigger", trigger, "--metrics-port", str(metrics_port),
                "--stop-when-idle", str(stop_when_idle), "--max-offsets", str(max_offsets), "--engine", engine,
                "--state-partitions", str(state_partitions)]
    if tickers:
        job_args += ["--tickers", ",".join(tickers)]
    java_options = None
    if jvm_metrics_port:
        job_args += ["--jvm-metrics-port", str(jvm_metrics_port)]
        java_options = f"-javaagent:{jmx_agent()}={local_address()}:{jvm_metrics_port}:{infra_file('prometheus', 'jmx', 'spark.yml')}"
    command = spark_submit_command(STREAM_JOB, job_args, master, jars=streaming_jars(), driver_java_options=java_options)
    if jvm_metrics_port:  # Spark's metrics into JMX, the streaming query's included
        at = command.index("--conf")
        command[at:at] = ["--conf", "spark.metrics.conf.*.sink.jmx.class=org.apache.spark.metrics.sink.JmxSink",
                          "--conf", "spark.sql.streaming.metricsEnabled=true"]
    return command


def start_stream_job(command: list[str], output=None, new_session: bool = False) -> subprocess.Popen:
    """Start the streaming job; its output (Spark's and the driver's ECS logs) goes to ``output`` (a file
    object; default: our stderr); ``new_session``: in its own process group (a supervisor's child)."""
    log.info("running %s", " ".join(command))
    out = output or sys.stderr
    return subprocess.Popen(command, env={**spark_env(), "OPENBLAS_NUM_THREADS": "1"}, stdout=out, stderr=out,
                            start_new_session=new_session)
