"""Elasticsearch in the local stack: one 9.5 node on 127.0.0.1 (``hft stack up --services elasticsearch``, or the
``logging`` group), where the project's logs and trading events are shipped and searched.

Maven Central publishes the Elasticsearch server and its transport-netty4 module (the HTTP layer) but not the
Elastic CLI that starts it, so ``make setup`` (infra/setup.sh) assembles an Elasticsearch home in
``build/elasticsearch`` (``lib/``, ``modules/transport-netty4/``, ``plugins/``) and compiles the project's launcher
(``infra/elasticsearch/launcher``), which starts the node in the JVM it runs in; ``build/elasticsearch/java-home``
names the JDK (21+) it was compiled with.

The node lives in ``<run_dir>/elasticsearch``: ``config/`` (``elasticsearch.yml`` rendered from
``infra/elasticsearch/elasticsearch.yml.template``, ``log4j2.properties``), ``data/``, ``logs/`` and ``tmp/``; its
log (the JVM's stdout and stderr) is ``<run_dir>/elasticsearch.log``. Healthy means ``GET /_cluster/health`` says
green or yellow (``GET /`` is not served by this build, so the Python client's ``ping()``/``info()`` fail).

What the Maven build lacks (the modules are not published): security (x-pack: hence 127.0.0.1 only, HTTP and
transport), Painless, ingest processors, ILM, data streams, ``delete_by_query``, the ``english`` analyzer,
``match_only_text``, ``wildcard`` and ``scaled_float``. Use daily indices with an index template
(``number_of_replicas: 0``).
"""

from __future__ import annotations

import json
import platform
import re
import shutil
import urllib.error
import urllib.request
from pathlib import Path

from hft.stack.base import SETUP_HINT, Service, http_ok, render
from hft.stack.config import StackError, infra_file, repo_root

#: The launcher's main class (in ``build/elasticsearch/hft-es-launcher.jar``); also how ``pid()`` knows the process.
MAIN_CLASS = "hft.elasticsearch.HftElasticsearchNode"
#: The cluster's name (one node): what ``/_cluster/health`` reports.
CLUSTER_NAME = "hft"
_HEAP = re.compile(r"^[1-9][0-9]*[kKmMgG]?$")


def es_home() -> Path:
    """The Elasticsearch home ``make setup`` assembles: ``<repo>/build/elasticsearch``."""
    return repo_root() / "build" / "elasticsearch"


def _platform_dir() -> str:
    machine = platform.machine().lower()
    return "linux-aarch64" if machine in ("aarch64", "arm64") else "linux-x64"


def jvm_options() -> list[str]:
    """The static JVM options of ``infra/elasticsearch/jvm.options`` (one per line, ``#`` comments)."""
    lines = infra_file("elasticsearch", "jvm.options").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


class Elasticsearch(Service):
    name = "elasticsearch"
    start_timeout = 120.0  # ~6 s warm; a cold JVM on a busy 2-core machine takes several times that
    stop_timeout = 45.0

    @property
    def home(self) -> Path:
        """The node's folder under the run directory (config, data, logs, tmp)."""
        return self.config.run_dir / "elasticsearch"

    @property
    def config_dir(self) -> Path:
        return self.home / "config"

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def ports(self) -> dict[str, int]:
        return {"HFT_ELASTICSEARCH_PORT": self.config.elasticsearch_port,
                "HFT_ELASTICSEARCH_TRANSPORT_PORT": self.config.elasticsearch_transport_port}

    def address(self) -> str:
        return self.config.elasticsearch_url

    def markers(self) -> list[str]:
        return [MAIN_CLASS, str(self.config_dir)]

    def _java(self) -> str:
        """The JDK 21+ that ``make setup`` compiled the launcher with (``build/elasticsearch/java-home``)."""
        record = es_home() / "java-home"
        if not record.is_file():
            raise StackError(f"Elasticsearch is not installed ({record} not found): {SETUP_HINT}")
        java = Path(record.read_text().strip()) / "bin" / "java"
        if not java.exists():
            raise StackError(f"{java} (the JDK 21+ Elasticsearch runs on) not found: {SETUP_HINT}")
        return str(java)

    def _layout(self) -> Path:
        home = es_home()
        module = home / "modules" / "transport-netty4"
        for required in (home / "hft-es-launcher.jar", module / "plugin-descriptor.properties"):
            if not required.exists():
                raise StackError(f"Elasticsearch is not installed ({required} not found): {SETUP_HINT}")
        if not list((home / "lib").glob("elasticsearch-[0-9]*.jar")):
            raise StackError(f"the Elasticsearch server jar is not in {home / 'lib'}: {SETUP_HINT}")
        return home

    def check(self) -> None:
        self._layout()
        self._java()
        if not _HEAP.match(self.config.elasticsearch_heap):
            raise StackError(f"HFT_ELASTICSEARCH_HEAP={self.config.elasticsearch_heap!r} is not a heap size "
                             "(e.g. 512m, 1g)")
        infra_file("elasticsearch", "elasticsearch.yml.template")
        infra_file("elasticsearch", "log4j2.properties")
        jvm_options()

    def prepare(self) -> tuple[list[str], Path]:
        home = self._layout()
        java = self._java()
        for folder in (self.config_dir, self.data_dir, self.logs_dir, self.home / "tmp"):
            folder.mkdir(parents=True, exist_ok=True)
        render(infra_file("elasticsearch", "elasticsearch.yml.template"), self.config_dir / "elasticsearch.yml",
               cluster_name=CLUSTER_NAME, node_name=f"hft-{self.config.elasticsearch_port}", host=self.host_address,
               http_port=self.config.elasticsearch_port, transport_port=self.config.elasticsearch_transport_port,
               data_dir=self.data_dir, logs_dir=self.logs_dir)
        shutil.copyfile(infra_file("elasticsearch", "log4j2.properties"), self.config_dir / "log4j2.properties")
        heap = self.config.elasticsearch_heap
        argv = [
            java, f"-Xms{min_heap(heap)}", f"-Xmx{heap}", *jvm_options(),
            f"-Djava.io.tmpdir={self.home / 'tmp'}",
            # What Elastic's launcher sets: the server finds its native libraries in <es.path.home>/lib/platform/
            # <os>-<arch> (setup.sh links Debian's libzstd there: the best_compression codec needs it).
            f"-Des.path.home={home}", f"-Des.path.conf={self.config_dir}",
            f"-Djava.library.path={home / 'lib' / 'platform' / _platform_dir()}",
            "--module-path", str(home / "lib"), "--add-modules=ALL-MODULE-PATH",
            "-cp", str(home / "hft-es-launcher.jar"),
            MAIN_CLASS, str(home), str(self.config_dir),
        ]
        return argv, self.home

    def health(self) -> tuple[bool, str]:
        return cluster_health(self.config.elasticsearch_url)


def min_heap(heap: str) -> str:
    """The initial heap: the maximum's, capped at 256m (a small -Xms keeps an idle node's footprint small)."""
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    size = int(heap.rstrip("kKmMgG")) * units[heap[-1].lower() if heap[-1].isalpha() else ""]
    return heap if size <= 256 << 20 else "256m"


def cluster_health(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """``GET <url>/_cluster/health``: healthy when the status is green or yellow (yellow: a replica has nowhere to
    go on one node, the data is all there)."""
    try:
        with urllib.request.urlopen(f"{url}/_cluster/health", timeout=timeout) as resp:
            body = json.loads(resp.read())
    except (urllib.error.URLError, OSError, ValueError) as e:
        return False, f"/_cluster/health failed: {e}"
    state = body.get("status", "?")
    detail = (f"cluster {body.get('cluster_name', '?')} {state}, {body.get('number_of_nodes', '?')} node(s), "
              f"{body.get('active_shards', '?')} shard(s)")
    return state in ("green", "yellow"), detail


class LogShipper(Service):
    """The log shipper (:mod:`hft.observability.shipper`): the processes' log files under ``<HFT_HOME>/logs`` and
    the trading record's Kafka topics into the node. It waits for Elasticsearch itself (and catches up after an
    outage), so it starts with the node; healthy means its ``/metrics`` answers (``HFT_LOG_SHIPPER_PORT``)."""

    name = "log-shipper"
    start_timeout = 60.0

    @property
    def host_address(self) -> str:
        return "127.0.0.1"  # its /metrics, like every hft process's, stays on loopback (on its host)

    def ports(self) -> dict[str, int]:
        return {"HFT_LOG_SHIPPER_PORT": self.config.log_shipper_port}

    def address(self) -> str:
        return f"{self.config.home}/logs -> {self.config.elasticsearch_url}"

    def markers(self) -> list[str]:
        return ["hft.observability.shipper", "--metrics-port", str(self.config.log_shipper_port)]

    def check(self) -> None:
        try:
            import elasticsearch  # noqa: F401
        except ImportError:
            raise StackError(f"python package elasticsearch is missing: {SETUP_HINT}") from None

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HFT_HOME"] = str(self.config.home)
        return env

    def prepare(self) -> tuple[list[str], Path]:
        import sys

        return [sys.executable, "-m", "hft.observability.shipper", "--metrics-port", str(self.config.log_shipper_port),
                "--elasticsearch", self.config.elasticsearch_url, "--kafka", self.config.kafka_bootstrap,
                "--run-dir", str(self.config.run_dir)], self.config.run_dir

    def health(self) -> tuple[bool, str]:
        return http_ok(f"http://127.0.0.1:{self.config.log_shipper_port}/metrics")
