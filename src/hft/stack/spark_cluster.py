"""A Spark standalone cluster on 127.0.0.1 from the pyspark distribution: one master and ``HFT_SPARK_WORKERS``
workers (``hft stack up --spark-workers N``), for the streaming job's ``tasks`` engine
(``hft stream --engine tasks --master spark://127.0.0.1:7077``).

Every process binds to loopback (``SPARK_LOCAL_IP``: RPC and web UIs alike), the UIs cannot kill
applications and the master runs no REST submission server. Nobody joins uninvited: the master, the workers,
the drivers and the executors authenticate each other (``spark.authenticate``) with the cluster's secret,
``HFT_SPARK_SECRET`` or generated once into ``<HFT_HOME>/secrets/spark-secret`` (and with a hosts file's
``tls = true`` encrypt their RPC with keys derived from it); the daemons read it from the
0600 ``spark-defaults.conf`` of ``SPARK_CONF_DIR`` (:func:`auth_properties`), ``spark-submit`` from the same file
(``--properties-file``), and a worker hands it to its executors in their environment (Spark's own way). The
web UIs (and the master's ``/json``) ask for a login (:func:`ui_credentials`, the project's servlet filter).
Worker ``n`` offers ``HFT_SPARK_WORKER_CORES``
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
from hft.stack.config import StackError
from hft.stack.spark import hft_spark_jar

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


#: The user of the cluster's web UIs (HTTP basic auth, ``hft.spark.BasicAuthFilter``); its password:
#: :func:`ui_credentials`.
UI_USER = "hft"
UI_FILTER = "hft.spark.BasicAuthFilter"


def ui_credentials(config) -> tuple[str, str]:
    """(user, password) of the master's and workers' web UIs: ``HFT_SPARK_UI_PASSWORD``, else generated once into
    ``<HFT_HOME>/secrets/spark-ui-password`` (0600)."""
    from hft.stack.base import secret

    assert config.home is not None
    return UI_USER, secret(config.home, "spark-ui-password", "HFT_SPARK_UI_PASSWORD")


def master_state(config) -> dict:
    """The master's JSON status (``/json``): ``status``, ``aliveworkers``, ``workers``, ``activeapps``..."""
    from hft.stack.base import basic_auth

    request = urllib.request.Request(f"http://{config.address_of('spark-master')}:{config.spark_ui_port}/json/")
    request.add_header("Authorization", basic_auth(*ui_credentials(config)))
    with urllib.request.urlopen(request, timeout=3) as resp:
        return json.loads(resp.read())


def auth_properties(config) -> Path:
    """The cluster's Spark properties (0600, written anew each time: the secrets may come from the environment),
    ``<run dir>/spark-conf/spark-defaults.conf``: authentication on, with the cluster's secret; the web UIs
    behind the login of :func:`ui_credentials` (its password in a 0600 file beside, which the filter reads)."""
    from hft.stack.base import config_secret, write_private

    assert config.home is not None
    folder = config.run_dir / "spark-conf"
    password_file = folder / "ui-password"
    user, password = ui_credentials(config)
    write_private(password_file, password + "\n")
    path = folder / "spark-defaults.conf"
    # With TLS (a hosts file's tls = true): RPC and block transfers encrypted too (AES, keys from the secret).
    # No fallback to SASL DIGEST-MD5 (unencrypted here) when the AES handshake fails: an attacker could force it.
    crypto = "spark.network.crypto.enabled true\nspark.network.crypto.saslFallback false\n" if config.tls else ""
    write_private(path, "spark.authenticate true\n"
                        f"spark.authenticate.secret {config_secret(config.home, 'spark-secret', 'HFT_SPARK_SECRET')}\n"
                        f"{crypto}"
                        f"spark.ui.filters {UI_FILTER}\n"
                        f"spark.{UI_FILTER}.param.user {user}\n"
                        f"spark.{UI_FILTER}.param.passwordFile {password_file}\n")
    return path


class _SparkDaemon(Service):
    start_timeout = 60.0
    stop_timeout = 20.0

    def env(self) -> dict[str, str]:
        env = child_env()
        env.update({"SPARK_LOCAL_IP": self.host_address, "SPARK_LOG_DIR": str(self.config.run_dir), "PYSPARK_PYTHON": sys.executable,
                    "SPARK_CONF_DIR": str(auth_properties(self.config).parent),
                    "SPARK_DAEMON_CLASSPATH": hft_spark_jar(),  # the UIs' login filter
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
        return [spark_class(), MASTER_CLASS, "--host", self.host_address, "--port", str(self.config.spark_master_port),
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
        return f"{self.host_address}:{self.ui_port}"

    def markers(self) -> list[str]:
        return [WORKER_CLASS, "--webui-port", str(self.ui_port)]

    def prepare(self) -> tuple[list[str], Path]:
        work = self.work_dir()
        return [spark_class(), WORKER_CLASS, "--host", self.host_address, "--webui-port", str(self.ui_port),
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
