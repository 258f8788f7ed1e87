"""A Spark standalone cluster on 127.0.0.1 from the pyspark distribution: one master and ``HFT_SPARK_WORKERS``
workers (``hft stack up --spark-workers N``), for the streaming job's ``tasks`` engine
(``hft stream --engine tasks --master spark://127.0.0.1:7077``).

Every process binds to loopback (``SPARK_LOCAL_IP``: RPC and web UIs alike), the UIs cannot kill
applications and the master runs no REST submission server. Worker ``n`` offers ``HFT_SPARK_WORKER_CORES``
cores (1) and ``HFT_SPARK_WORKER_MEMORY`` (1g), keeps its executors' folders in ``<run dir>/spark-worker-n``
and its web UI on ``HFT_SPARK_UI_PORT + n`` (the master's on ``HFT_SPARK_UI_PORT``, 8091).
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

from hft.stack.base import SETUP_HINT, Service, child_env
from hft.stack.config import HOST, StackError

MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_class() -> str:
    """pyspark's ``spark-class`` launcher (it ``exec``s the JVM: the pid is the JVM's)."""
    try:
        import pyspark
    except ImportError:
        raise StackError(f"pyspark is not installed: {SETUP_HINT}") from None
    launcher = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not launcher.exists():
        raise StackError(f"{launcher} not found: {SETUP_HINT}")
    return str(launcher)


def master_state(config) -> dict:
    """The master's JSON status (``/json``): ``status``, ``aliveworkers``, ``workers``, ``activeapps``..."""
    with urllib.request.urlopen(f"http://{HOST}:{config.spark_ui_port}/json/", timeout=3) as resp:
        return json.loads(resp.read())


class _SparkDaemon(Service):
    start_timeout = 60.0
    stop_timeout = 20.0

    def env(self) -> dict[str, str]:
        env = child_env()
        env.update({"SPARK_LOCAL_IP": HOST, "SPARK_LOG_DIR": str(self.config.run_dir), "PYSPARK_PYTHON": sys.executable,
                    # the daemons' own JVM options: no kill links in the UIs, no REST submission server (it
                    # would run any job sent to it, unauthenticated), no port shifting onto a neighbour's when
                    # one is taken (fail instead), finished applications' folders cleaned after a day
                    "SPARK_DAEMON_JAVA_OPTS": "-Dspark.ui.killEnabled=false -Dspark.master.rest.enabled=false "
                                              "-Dspark.port.maxRetries=0 -Dspark.worker.cleanup.enabled=true "
                                              "-Dspark.worker.cleanup.appDataTtl=86400",
                    "SPARK_DAEMON_MEMORY": "256m"})
        return env

    def check(self) -> None:
        spark_class()

    def work_dir(self) -> Path:
        """The daemon's working folder (a worker's: its executors' folders too), created."""
        work = self.config.run_dir / self.name
        work.mkdir(parents=True, exist_ok=True)
        return work

    def master(self) -> tuple[dict | None, str]:
        """(the master's state, "") or (None, why it could not be read)."""
        try:
            return master_state(self.config), ""
        except (urllib.error.URLError, OSError, ValueError) as e:
            return None, f"the master's /json failed: {e}"


class SparkMaster(_SparkDaemon):
    name = "spark-master"

    def ports(self) -> dict[str, int]:
        return {"HFT_SPARK_MASTER_PORT": self.config.spark_master_port, "HFT_SPARK_UI_PORT": self.config.spark_ui_port}

    def address(self) -> str:
        return self.config.spark_master_url

    def markers(self) -> list[str]:
        return [MASTER_CLASS, "--port", str(self.config.spark_master_port)]

    def prepare(self) -> tuple[list[str], Path]:
        return [spark_class(), MASTER_CLASS, "--host", HOST, "--port", str(self.config.spark_master_port),
                "--webui-port", str(self.config.spark_ui_port)], self.work_dir()

    def health(self) -> tuple[bool, str]:
        state, error = self.master()
        if state is None:
            return False, error
        return state.get("status") == "ALIVE", (f"{state.get('status')}, {state.get('aliveworkers', 0)} worker(s), "
                                                f"{len(state.get('activeapps', []))} application(s)")


class SparkWorker(_SparkDaemon):
    def __init__(self, config, n: int = 1):
        super().__init__(config)
        self.n = n
        self.name = f"spark-worker-{n}"

    @property
    def ui_port(self) -> int:
        return self.config.spark_ui_port + self.n

    def ports(self) -> dict[str, int]:
        return {f"HFT_SPARK_UI_PORT (+{self.n})": self.ui_port}

    def address(self) -> str:
        return f"{HOST}:{self.ui_port}"

    def markers(self) -> list[str]:
        return [WORKER_CLASS, "--webui-port", str(self.ui_port)]

    def prepare(self) -> tuple[list[str], Path]:
        work = self.work_dir()
        return [spark_class(), WORKER_CLASS, "--host", HOST, "--webui-port", str(self.ui_port),
                "--cores", str(self.config.spark_worker_cores), "--memory", self.config.spark_worker_memory,
                "--work-dir", str(work), self.config.spark_master_url], work

    def health(self) -> tuple[bool, str]:
        """Registered with the master and alive."""
        state, error = self.master()
        if state is None:
            return False, error
        mine = [w for w in state.get("workers", []) if str(w.get("webuiaddress", "")).endswith(f":{self.ui_port}")]
        alive = [w for w in mine if w.get("state") == "ALIVE"]
        if not alive:
            return False, "not registered with the master"
        w = alive[0]
        return True, f"{w.get('cores')} core(s), {w.get('memory')} MB, {w.get('coresused', 0)} in use"
