"""Start, stop and check the local services: Kafka (KRaft), Redis, the MLflow tracking server, Airflow
(:mod:`hft.stack.airflow`), PostgreSQL (:mod:`hft.stack.postgres`, for MLflow and Airflow), monitoring
(:mod:`hft.stack.monitoring`) and Elasticsearch (:mod:`hft.stack.elasticsearch`).

Each service runs detached (its own session, so ``hft stack up`` can return) with everything under
``run_dir``: ``<name>.pid``, ``<name>.log`` and its data (``kafka/``, ``redis/``; MLflow's database and
artifacts are in ``HFT_HOME`` so the CLI sees the same runs). A pid file only counts when ``/proc/<pid>``
still runs the expected program, so a stale file (crash, reboot, reused pid) is noticed and removed.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from hft.kafka_conn import MECHANISM, PASSWORD_ENV, SECRET_NAME, USER, KafkaLogin
from hft.stack import process
from hft.stack.airflow import AirflowApi, AirflowDagProcessor, AirflowScheduler
from hft.stack.base import (
    SETUP_HINT,
    Service,
    ServiceStatus,
    config_secret,
    java,
    mlflow_credentials,
    render,
    secret,
)
from hft.stack.config import (
    AIRFLOW_SERVICES,
    ALL_SERVICES,
    KAFKA_PORT_STEP,
    SERVICES,
    StackConfig,
    StackError,
    expand_services,
    formatted_kafka_cluster,
    infra_file,
    new_kafka_cluster_id,
    repo_root,
)
from hft.stack.elasticsearch import Elasticsearch, LogShipper
from hft.stack.kafka import _ck, kafka_health
from hft.stack.monitoring import AlertHook, Alertmanager, NodeExporter, Prometheus, RedisExporter
from hft.stack.postgres import Postgres, metadata_url, prepare_database
from hft.stack.spark_cluster import SparkMaster, SparkWorker
from hft.tls import urlopen as tls_urlopen

log = logging.getLogger("hft.stack")


def jmx_agent() -> Path:
    """The Prometheus JMX exporter's Java agent jar (``make setup`` fetches it into build/jmx-agent)."""
    found = sorted((repo_root() / "build" / "jmx-agent").glob("jmx_prometheus_javaagent-*.jar"))
    if not found:
        raise StackError(f"the Prometheus JMX exporter agent is not in {repo_root() / 'build' / 'jmx-agent'}: {SETUP_HINT}")
    return found[-1]


class Kafka(Service):
    """Kafka node ``node`` (1-based) of ``config.kafka_brokers``: service ``kafka`` (node 1, its data in
    ``run_dir/kafka`` as before clusters existed), ``kafka-2``, ``kafka-3``..."""

    start_timeout = 120.0
    stop_timeout = 45.0

    def __init__(self, config: StackConfig, node: int = 1):
        super().__init__(config)
        self.node = node
        self.name = "kafka" if node == 1 else f"kafka-{node}"

    @property
    def home(self) -> Path:
        return self.config.run_dir / self.name

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def properties(self) -> Path:
        return self.home / "server.properties"

    @property
    def libs(self) -> Path:
        return repo_root() / "build" / "kafka-libs"

    @property
    def cluster_file(self) -> Path:
        """The cluster's id and size, written when node 1's storage is first formatted."""
        return self.config.run_dir / "kafka-cluster.json"

    def ports(self) -> dict[str, int]:
        client, controller, metrics = self.config.kafka_node_ports(self.node)
        suffix = "" if self.node == 1 else f" (+{self.node - 1}*{KAFKA_PORT_STEP}, node {self.node})"
        return {f"HFT_KAFKA_PORT{suffix}": client, f"HFT_KAFKA_CONTROLLER_PORT{suffix}": controller,
                f"HFT_KAFKA_METRICS_PORT{suffix}": metrics}

    def address(self) -> str:
        return f"{self.host_address}:{self.config.kafka_node_ports(self.node)[0]}"

    def markers(self) -> list[str]:
        return ["kafka.Kafka", str(self.properties)]

    def _jvm(self, heap: str) -> list[str]:
        if not list(self.libs.glob("kafka_2.13-*.jar")):
            raise StackError(f"Kafka jars not found in {self.libs}: {SETUP_HINT}")
        return [
            java(), f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35", "-XX:+ExplicitGCInvokesConcurrent", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={infra_file('kafka', 'log4j2.xml')}",
            # Kafka logs its own shutdown from a shutdown hook: log4j's hook must not close the log first.
            "-Dlog4j2.shutdownHookEnabled=false",
            f"-Dkafka.logs.dir={self.home / 'logs'}",
            "-cp", f"{self.libs}/*",
        ]

    def check(self) -> None:
        self._jvm(self.config.kafka_heap)
        jmx_agent()
        infra_file("kafka", "server.properties.template")
        _ck()  # the health check needs confluent-kafka: fail before starting anything
        cluster = formatted_kafka_cluster(self.config.run_dir)
        if cluster is not None and cluster["brokers"] != self.config.kafka_brokers:
            raise StackError(
                f"kafka: the data in {self.config.run_dir} belongs to a cluster of {cluster['brokers']} broker(s), "
                f"not HFT_KAFKA_BROKERS={self.config.kafka_brokers}. Keep HFT_KAFKA_BROKERS={cluster['brokers']}, "
                f"or `hft stack down` and remove {self.config.run_dir}/kafka* (its topics are lost) to start anew.")

    def prepare(self) -> tuple[list[str], Path]:
        jvm = self._jvm(self.config.kafka_heap)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        brokers = self.config.kafka_brokers
        client, controller, metrics = self.config.kafka_node_ports(self.node)
        quorum = (f"controller.quorum.bootstrap.servers={self.host_address}:{controller}" if brokers == 1
                  else f"controller.quorum.voters={self.config.kafka_quorum}")
        auth = self.login()
        render(infra_file("kafka", "server.properties.template"), self.properties, private=True,
               node_id=self.node, quorum=quorum, host=self.host_address, port=client, controller_port=controller, log_dirs=self.data_dir,
               replicas=min(3, brokers), min_isr=2 if brokers >= 3 else 1, mechanism=MECHANISM, jaas=auth.jaas,
               **self._tls_properties())
        if not (self.data_dir / "meta.properties").exists():
            self._format(auth)
        elif not self.scram_marker.exists():
            raise StackError(
                f"{self.name}: its storage in {self.data_dir} was formatted before Kafka required a login, so it "
                f"knows no user: `hft stack down` and remove {self.config.run_dir}/kafka* (its topics are lost) to "
                "start anew")
        # The Prometheus JMX exporter in the broker's JVM: /metrics on its address (scraped as job "kafka").
        agent = f"-javaagent:{jmx_agent()}={self.host_address}:{metrics}:{infra_file('prometheus', 'jmx', 'kafka.yml')}"
        return [*jvm, agent, "kafka.Kafka", str(self.properties)], self.home

    def _tls_properties(self) -> dict[str, str]:
        """The listeners' protocols, and with TLS the node's key store (its certificate of the stack's CA) and
        trust store (the CA)."""
        tls = self.tls_files()
        if tls is None:
            return {"protocol_map": "CONTROLLER:PLAINTEXT,BROKER:SASL_PLAINTEXT", "tls": ""}
        return {"protocol_map": "CONTROLLER:SSL,BROKER:SASL_SSL",
                "tls": (f"ssl.keystore.type=PEM\nssl.keystore.location={tls.keystore}\n"
                        f"ssl.truststore.type=PEM\nssl.truststore.location={tls.ca}\n"
                        "ssl.endpoint.identification.algorithm=https\n"
                        "listener.name.controller.ssl.client.auth=required\n")}

    @property
    def scram_marker(self) -> Path:
        """Written once the storage is formatted with the stack user's SCRAM credential."""
        return self.home / "scram-user"

    def login(self) -> KafkaLogin:
        """The stack's Kafka user and its password (``HFT_KAFKA_PASSWORD``, else generated once into
        ``$HFT_HOME/secrets/kafka-password``)."""
        assert self.config.home is not None
        return KafkaLogin(USER, config_secret(self.config.home, SECRET_NAME, PASSWORD_ENV))

    def _format(self, auth: KafkaLogin) -> None:
        """Format the KRaft storage once, with the cluster's id (made by the first node formatted): one node is
        the single voter of a dynamic quorum (``--standalone``); a cluster's voters are in the properties."""
        cluster = formatted_kafka_cluster(self.config.run_dir)
        if self.config.kafka_cluster_id:  # given (a hosts file): the same on every host
            cluster = {"cluster_id": self.config.kafka_cluster_id, "brokers": self.config.kafka_brokers}
            self.cluster_file.write_text(json.dumps(cluster) + "\n")
        elif cluster is None or cluster["cluster_id"] is None:
            cluster = {"cluster_id": new_kafka_cluster_id(), "brokers": self.config.kafka_brokers}
            self.cluster_file.write_text(json.dumps(cluster) + "\n")
        quorum = ["--standalone"] if self.config.kafka_brokers == 1 else []
        # The user's SCRAM credential goes into the cluster's first metadata (brokers authenticate each other
        # with it from their first start). StorageTool takes it only as an argument: for the second the format
        # runs, `ps` could show it; its output (logged below) does not hold it.
        scram = f"{MECHANISM}=[name={auth.username},password={auth.password}]"
        argv = [*self._jvm("256m"), "kafka.tools.StorageTool", "format", *quorum, "--ignore-formatted",
                "--cluster-id", cluster["cluster_id"], "--config", str(self.properties), "--add-scram", scram]
        log.info("formatting Kafka storage in %s", self.data_dir)
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=self.home)
        said = (proc.stdout[-5000:] + proc.stderr[-5000:]).replace(auth.password, "***")  # an error may quote it
        with open(self.log_file, "a") as f:
            f.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} storage format (exit {proc.returncode})\n")
            f.write(said)
        if proc.returncode != 0 or not (self.data_dir / "meta.properties").exists():
            out = "\n".join(said.splitlines()[-15:])
            raise StackError(
                f"{self.name}: formatting the storage in {self.data_dir} failed (exit {proc.returncode}):\n{out}"
            )
        self.scram_marker.write_text(f"{auth.username} {MECHANISM}\n")

    def health(self) -> tuple[bool, str]:
        """This node answers metadata and the cluster counts it among its brokers."""
        return kafka_health(self.address(), timeout=3.0, node=self.node if self.config.kafka_brokers > 1 else None,
                            auth=self.login())


class Redis(Service):
    """Redis node ``node``: ``redis`` (node 1, the first master; data in ``run_dir/redis``), and with
    ``config.redis_replicas`` its replicas ``redis-2``, ``redis-3``... (:class:`Sentinel` watches them)."""

    start_timeout = 30.0
    stop_timeout = 20.0
    umask = 0o077  # CONFIG REWRITE (after a failover) writes redis.conf, which holds the password, anew

    def __init__(self, config: StackConfig, node: int = 1):
        super().__init__(config)
        self.node = node
        self.name = "redis" if node == 1 else f"redis-{node}"

    @property
    def port(self) -> int:
        return self.config.redis_node_port(self.node)

    @property
    def data_dir(self) -> Path:
        return self.config.run_dir / self.name

    def ports(self) -> dict[str, int]:
        return {"HFT_REDIS_PORT" + ("" if self.node == 1 else f" (+{self.node - 1}, replica)"): self.port}

    def address(self) -> str:
        return self.config.redis_url if self.node == 1 else self.config.redis_node_url(self.node)

    def markers(self) -> list[str]:
        return ["redis-server", f"{self.host_address}:{self.port}"]  # Redis's title: 'redis-server ADDRESS:PORT'

    def check(self) -> None:
        _redis_binary()
        infra_file("redis", "redis.conf.template")
        _redis_module()

    def _master_now(self) -> tuple[str, int] | None:
        """The address and port of the master the Sentinels know now (None: no Sentinel answers)."""
        from hft.redis_conn import master_address

        if not self.config.redis_sentinels:
            return None
        try:
            return master_address(self.config.redis_url)
        except Exception:  # noqa: BLE001 - no Sentinel up yet: the stack's first start
            return None

    def prepare(self) -> tuple[list[str], Path]:
        binary = _redis_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "redis.conf"
        replication = ""
        if self.config.redis_replicas:
            # A node rejoins as a replica of the master of the moment (after a failover, not node 1).
            host, port = self._master_now() or (self.config.redis_node_address(1), self.config.redis_node_port(1))
            replication = "min-replicas-to-write 1\nmin-replicas-max-lag 10\n"
            if (host, port) != (self.host_address, self.port):
                replication += f"replicaof {host} {port}\n"
        render(infra_file("redis", "redis.conf.template"), conf, private=True, host=self.host_address,
               listen=_redis_listen(self, self.port), dir=self.data_dir,
               replication=replication, **_redis_login(self.config))
        if self.node == 1:
            (self.config.run_dir / "redis-replication.json").write_text(
                json.dumps({"replicas": self.config.redis_replicas}) + "\n")
        return [binary, str(conf)], self.data_dir

    def health(self) -> tuple[bool, str]:
        redis = _redis_module()
        client = _redis_client(self.config, self.host_address, self.port)
        try:
            if not client.ping():
                return False, "PING not answered"
            version = client.info("server").get("redis_version", "?")
            if not self.config.redis_replicas:
                return True, f"redis {version}"
            repl = client.info("replication")
            if repl.get("role") == "master":
                return True, f"redis {version}, master with {repl.get('connected_slaves', 0)} replica(s)"
            link = repl.get("master_link_status")
            return link == "up", f"redis {version}, replica of port {repl.get('master_port')} (link {link})"
        except redis.RedisError as e:
            return False, f"PING failed: {e}"
        finally:
            client.close()


class Sentinel(Service):
    """Redis Sentinel ``k`` (``sentinel-1``...): watches the master, and with a majority of the others promotes a
    replica when it dies. ``redis-server --sentinel`` (the Debian ``redis-sentinel`` package is the same binary)."""

    start_timeout = 30.0
    stop_timeout = 20.0
    umask = 0o077  # Sentinel rewrites sentinel.conf, which holds the password, with what it learns

    def __init__(self, config: StackConfig, k: int = 1):
        super().__init__(config)
        self.k = k
        self.name = f"sentinel-{k}"

    @property
    def port(self) -> int:
        return self.config.redis_sentinels[self.k - 1]

    @property
    def data_dir(self) -> Path:
        return self.config.run_dir / self.name

    def ports(self) -> dict[str, int]:
        return {f"HFT_REDIS_SENTINEL_PORT (+{self.k - 1})": self.port}

    def address(self) -> str:
        return f"{self.host_address}:{self.port}"

    def markers(self) -> list[str]:
        return ["redis-server", f"{self.host_address}:{self.port}", "sentinel"]

    def check(self) -> None:
        _redis_binary()
        infra_file("redis", "sentinel.conf.template")
        _redis_module()

    def prepare(self) -> tuple[list[str], Path]:
        from hft.redis_conn import MASTER_NAME

        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "sentinel.conf"
        if not conf.exists():  # Sentinel keeps what it learned (the master now, the replicas) in this file
            render(infra_file("redis", "sentinel.conf.template"), conf, private=True, host=self.host_address,
                   listen=_redis_listen(self, self.port), dir=self.data_dir, master=MASTER_NAME,
                   master_host=self.config.redis_node_address(1), master_port=self.config.redis_node_port(1),
                   **_redis_login(self.config))
        # The port and TLS settings on the command line: this file, which Sentinel rewrites with what it learned,
        # is written once, and they must follow the hosts file's tls on every start.
        undo = "tls-" in conf.read_text()
        listen = [arg for k, v in _redis_listen_options(self, self.port, undo) for arg in (f"--{k}", v)]
        return [_redis_binary(), str(conf), "--sentinel", *listen], self.data_dir

    def health(self) -> tuple[bool, str]:
        from hft.redis_conn import MASTER_NAME

        redis = _redis_module()
        client = _redis_client(self.config, self.host_address, self.port)
        try:
            master = client.sentinel_master(MASTER_NAME)
            flags = master.get("flags", "")
            ok = "s_down" not in str(flags) and "o_down" not in str(flags)
            return ok, (f"master {master.get('ip')}:{master.get('port')} ({flags}), "
                        f"{master.get('num-other-sentinels', 0)} other sentinel(s)")
        except redis.RedisError as e:
            return False, f"SENTINEL MASTER failed: {e}"
        finally:
            client.close()


def _redis_binary() -> str:
    for candidate in ("/usr/bin/redis-server", shutil.which("redis-server")):
        if candidate and Path(candidate).exists():
            return candidate
    raise StackError(f"redis-server not found: {SETUP_HINT}")


def _redis_listen_options(service: Service, port: int, undo_tls: bool = False) -> list[tuple[str, str]]:
    """A Redis node's or Sentinel's port settings: its port in clear, or with TLS only a TLS port with the host's
    certificate, replication (and Sentinel's connections) over TLS too. ``undo_tls``: in clear, also switch off
    the TLS settings a file kept from a start with TLS (given on the command line, they override it)."""
    tls = service.tls_files()
    if tls is None:
        return [("port", str(port))] + ([("tls-port", "0"), ("tls-replication", "no")] if undo_tls else [])
    return [("port", "0"), ("tls-port", str(port)), ("tls-cert-file", str(tls.cert)), ("tls-key-file", str(tls.key)),
            ("tls-ca-cert-file", str(tls.ca)), ("tls-auth-clients", "no"), ("tls-replication", "yes")]


def _redis_listen(service: Service, port: int) -> str:
    """:func:`_redis_listen_options` as configuration file lines."""
    return "\n".join(f"{k} {v}" for k, v in _redis_listen_options(service, port))


def _redis_login(config: StackConfig) -> dict[str, str]:
    """The stack's Redis user and its password (``HFT_REDIS_PASSWORD``, else generated once into
    ``config.redis_password_file``)."""
    from hft.redis_conn import PASSWORD_ENV, USER

    assert config.home is not None
    return {"user": USER, "password": config_secret(config.home, config.redis_password_file.name, PASSWORD_ENV)}


def _redis_client(config: StackConfig, address: str, port: int):
    """A client of the stack's Redis node or Sentinel at ``address:port``, logged in."""
    from hft.redis_conn import connect

    return connect(config.redis_url_on(port, address), decode_responses=False, socket_timeout=2, socket_connect_timeout=2)


def _redis_module():
    try:
        import redis
    except ImportError:
        raise StackError(f"python package redis is missing: {SETUP_HINT}") from None
    return redis


class MLflow(Service):
    name = "mlflow"
    start_timeout = 180.0
    stop_timeout = 20.0

    @property
    def home(self) -> Path:
        assert self.config.home is not None  # StackConfig fills it in (run_dir's parent by default)
        return self.config.home

    @property
    def artifacts(self) -> Path:
        return self.home / "mlartifacts"

    @property
    def auth_config(self) -> Path:
        return self.config.run_dir / "mlflow-auth.ini"

    def ports(self) -> dict[str, int]:
        return {"HFT_MLFLOW_PORT": self.config.mlflow_port}

    def address(self) -> str:
        return self.config.mlflow_uri

    def markers(self) -> list[str]:
        return ["mlflow", "server", "--default-artifact-root"]

    def _binary(self) -> Path:
        binary = Path(sys.executable).parent / "mlflow"  # the venv's, not whatever PATH finds
        if not binary.exists():
            raise StackError(f"{binary} not found (mlflow is not installed in this environment): {SETUP_HINT}")
        return binary

    def check(self) -> None:
        self._binary()

    def prepare(self) -> tuple[list[str], Path]:
        binary = self._binary()
        self.home.mkdir(parents=True, exist_ok=True)
        self.artifacts.mkdir(parents=True, exist_ok=True)
        prepare_database(self.config, metadata_url(self.config, "mlflow"))
        # The store's URL (it may hold a password) goes in the environment, not on the command line.
        # Nobody in without a login (MLflow's basic-auth app): the admin and its password come in the environment
        # (env()); this file says where the users live and what a user may do by default (read).
        users = metadata_url(self.config, "mlflow_auth")
        prepare_database(self.config, users)
        # 0600: a PostgreSQL URL holds its password; '%' doubled for MLflow's ConfigParser
        render(infra_file("mlflow", "basic_auth.ini.template"), self.auth_config, private=True,
               database=users.replace("%", "%%"))
        argv = [
            str(binary), "server", "--host", self.host_address, "--port", str(self.config.mlflow_port), "--workers", "1",
            "--app-name", "basic-auth",
            "--default-artifact-root", str(self.artifacts),
            # /metrics for Prometheus (job mlflow); the multiprocess files live beside the other run data.
            "--expose-prometheus", str(self.config.run_dir / "mlflow-metrics"),
        ]
        if self.host_address != "127.0.0.1":  # MLflow's DNS-rebinding guard knows loopback and private networks
            port = self.config.mlflow_port
            argv += ["--allowed-hosts", ",".join(f"{h},{h}:{port}" for h in (self.host_address, "127.0.0.1",
                                                                            "localhost"))]
        tls = self.tls_files()
        if tls is not None:  # HTTPS only (uvicorn, MLflow's default server), with the host's certificate
            argv += ["--uvicorn-opts", f"--ssl-certfile {tls.cert} --ssl-keyfile {tls.key}"]
        return argv, self.home

    def env(self) -> dict[str, str]:
        env = super().env()
        # MLflow 3's server otherwise starts a job runner and seven huey consumers (GenAI evaluation jobs,
        # periodic trace tasks): ~2 GB of Python processes the pipeline never uses. Set it to true to have them.
        env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
        env["MLFLOW_BACKEND_STORE_URI"] = metadata_url(self.config, "mlflow")
        user, password = mlflow_credentials(self.config)
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str(self.auth_config), "MLFLOW_AUTH_ADMIN_USERNAME": user,
                    "MLFLOW_AUTH_ADMIN_PASSWORD": password})
        if not env.get("MLFLOW_FLASK_SERVER_SECRET_KEY"):  # signs the UI's forms (CSRF)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = secret(self.home, "mlflow-flask-key", "MLFLOW_FLASK_SERVER_SECRET_KEY")
        return env

    def health(self) -> tuple[bool, str]:
        try:
            with tls_urlopen(f"{self.config.mlflow_uri}/health", timeout=3) as resp:
                body = resp.read(100).decode(errors="replace").strip()
                return resp.status == 200, f"/health: {resp.status} {body}"
        except (urllib.error.URLError, OSError) as e:
            return False, f"/health failed: {e}"


_CLASSES: dict[str, type[Service]] = {
    "postgres": Postgres, "kafka": Kafka, "redis": Redis, "mlflow": MLflow,
    "airflow-api": AirflowApi, "airflow-scheduler": AirflowScheduler, "airflow-dag-processor": AirflowDagProcessor,
    "prometheus": Prometheus, "node-exporter": NodeExporter, "redis-exporter": RedisExporter,
    "alertmanager": Alertmanager, "alert-hook": AlertHook,
    "elasticsearch": Elasticsearch, "log-shipper": LogShipper,
}


def _services(config: StackConfig, names: Iterable[str]) -> list[Service]:
    """The services named (groups expanded by ``config.members``, the order kept, repeats dropped); ``kafka`` stands
    for every node of the cluster, ``kafka-N`` for node N alone; ``redis`` for the master, its replicas
    (``redis-N``) and the Sentinels (``sentinel-K``); ``spark`` for the standalone cluster's master and workers
    (``spark-worker-N``)."""
    nodes: dict[str, Service] = {svc.name: svc for svc in (
        *(Kafka(config, n) for n in range(1, config.kafka_brokers + 1)),
        *(Redis(config, n) for n in range(1, config.redis_replicas + 2)),
        *(Sentinel(config, k) for k in range(1, len(config.redis_sentinels) + 1)),
        *((SparkMaster(config),) if config.spark_workers else ()),
        *(SparkWorker(config, n) for n in range(1, config.spark_workers + 1)))}
    out: dict[str, Service] = {}
    unknown = []
    for name in expand_services(names):
        for member in config.members(name):
            if member in nodes:
                out.setdefault(member, nodes[member])
            elif member in _CLASSES:
                out.setdefault(member, _CLASSES[member](config))
            else:
                unknown.append(member)
    if unknown:
        more = [n for n in nodes if n not in ("kafka", "redis")]
        raise StackError(f"unknown service(s) {', '.join(unknown)}; known: {', '.join(ALL_SERVICES)}"
                         f"{' (and ' + ', '.join(more) + ')' if more else ''}, and the groups airflow, monitoring, "
                         "logging, all")
    return list(out.values())


# -- the API ---------------------------------------------------------------------------------------------------
def with_dependencies(config: StackConfig, services: Iterable[str]) -> tuple[str, ...]:
    """The services to start for ``services``: groups expanded, and PostgreSQL first when MLflow or Airflow keep
    their state in it (``HFT_METADATA_DB=postgres``)."""
    names = expand_services(services)
    if (config.metadata_db == "postgres" and "postgres" not in names
            and any(n == "mlflow" or n in AIRFLOW_SERVICES for n in names)):
        names = ("postgres", *names)
    return names


def up(config: StackConfig, services: Iterable[str] = SERVICES, timeout: float | None = None) -> dict[str, str]:
    """Start the services that are not running and wait until each is healthy; idempotent.

    A running, healthy service is left alone. ``timeout`` (seconds) overrides each service's own start
    timeout. PostgreSQL (when configured, :func:`with_dependencies`) is healthy before its clients start.
    Returns ``{service: what happened}``. Raises StackError when a port is taken by something else, a
    program or jar is missing (run ``make setup``), or a service dies or stays unhealthy while starting (with
    the last lines of its log); a service that failed is stopped, the others are left running.
    """
    todo, elsewhere = _here(config, _services(config, with_dependencies(config, services)))
    config.run_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, str] = dict(elsewhere)
    errors: list[str] = []
    with process.locked(config.run_dir / ".stack.lock"):
        # Every check before the first start: a missing jar or a taken port starts nothing.
        for svc in todo:
            if svc.pid() is None:
                svc.check()
                svc.check_ports()
        first = [svc for svc in todo if svc.name == "postgres"]
        for tier in (first, [svc for svc in todo if svc.name != "postgres"]):
            if tier and not errors:
                _start(tier, timeout, result, errors)
    if errors:
        done = "; ".join(f"{k}: {v}" for k, v in result.items())
        raise StackError("\n".join(errors) + (f"\n(ok: {done})" if done else ""))
    return {**{svc.name: result[svc.name] for svc in todo}, **elsewhere}


def _here(config: StackConfig, services: list[Service]) -> tuple[list[Service], dict[str, str]]:
    """The services this machine runs (all of them without a hosts file), and ``{name: "on host ..."}`` for those
    the hosts file puts elsewhere. A hosts file of several hosts needs this machine's (``HFT_HOST``); a service
    it places nowhere is an error."""
    if config.hosts is None:
        return services, {}
    if config.host is None:
        raise StackError(f"{config.hosts.path} describes {len(config.hosts.hosts)} hosts: say which one this machine "
                         f"is with --host or HFT_HOST ({', '.join(h.name for h in config.hosts.hosts)})")
    nowhere = [svc.name for svc in services if config.host_of(svc.name) is None]
    if nowhere:
        raise StackError(f"{config.hosts.path} places {', '.join(nowhere)} on no host: add them to a host's services")
    here = [svc for svc in services if config.runs_here(svc.name)]
    elsewhere = {svc.name: f"on host {config.host_of(svc.name).name} ({svc.host_address})"  # type: ignore[union-attr]
                 for svc in services if not config.runs_here(svc.name)}
    return here, elsewhere


def _start(todo: list[Service], timeout: float | None, result: dict[str, str], errors: list[str]) -> None:
    """Start those of ``todo`` not running and wait for all of them to be healthy (results and errors filled in)."""
    started: dict[str, tuple[Service, int, int, float]] = {}  # name -> (service, pid, log offset, t0)
    waiting: dict[str, tuple[Service, int]] = {}  # already running, not healthy yet
    to_start = []
    for svc in todo:
        pid = svc.pid()
        if pid is None:
            to_start.append(svc)
            continue
        ok, _ = svc.safe_health()
        if ok:
            result[svc.name] = f"already running (pid {pid}) at {svc.address()}"
        else:
            waiting[svc.name] = (svc, pid)
    for svc in to_start:
        offset = svc.log_file.stat().st_size if svc.log_file.exists() else 0
        t0 = time.monotonic()  # Kafka's first start includes formatting its storage
        try:
            argv, cwd = svc.prepare()
        except StackError as e:
            errors.append(str(e))
            continue
        try:
            pid = process.spawn(argv, svc.log_file, cwd=cwd, env=svc.env(), umask=svc.umask)
        except OSError as e:
            errors.append(f"{svc.name}: cannot run {argv[0]}: {e}")
            continue
        process.write_pid(svc.pid_file, pid)
        log.info("started %s (pid %d): %s", svc.name, pid, " ".join(argv))
        started[svc.name] = (svc, pid, offset, t0)

    # Wait for all of them together: Kafka's JVM and MLflow's imports overlap.
    pending = {n: (s, p, o, t) for n, (s, p, o, t) in started.items()}
    pending.update({n: (s, p, 0, time.monotonic()) for n, (s, p) in waiting.items()})
    while pending:
        for name, (svc, pid, offset, t0) in list(pending.items()):
            limit = timeout if timeout is not None else svc.start_timeout
            if not process.alive(pid):
                svc.pid_file.unlink(missing_ok=True)
                errors.append(f"{name} exited while starting; last lines of {svc.log_file}:\n"
                              f"{_indent(process.tail(svc.log_file, 25, offset))}")
                del pending[name]
                continue
            ok, detail = svc.safe_health()
            if ok:
                if name in started:
                    result[name] = f"started (pid {pid}) in {time.monotonic() - t0:.1f}s at {svc.address()}"
                else:
                    result[name] = f"already running (pid {pid}) at {svc.address()}"
                del pending[name]
            elif time.monotonic() - t0 > limit:
                if name in started:
                    process.terminate(pid, svc.stop_timeout, svc.stop_signal())
                    svc.pid_file.unlink(missing_ok=True)
                    what = "stopped it"
                else:
                    what = "left it running; `hft stack down` stops it"
                errors.append(f"{name} (pid {pid}) not healthy after {limit:.0f}s ({detail}); {what}. "
                              f"Last lines of {svc.log_file}:\n{_indent(process.tail(svc.log_file, 25, offset))}")
                del pending[name]
        if pending:
            time.sleep(0.25)


def down(config: StackConfig, services: Iterable[str] = ALL_SERVICES, timeout: float | None = None) -> dict[str, str]:
    """Stop what ``up`` started: SIGTERM, then SIGKILL after a timeout; idempotent.

    Only processes named by our pid files (and still running the expected program) are signalled; a service
    on the same port that we did not start is left alone. Returns ``{service: what happened}``.
    """
    todo = [svc for svc in _services(config, services) if config.runs_here(svc.name)]
    result: dict[str, str] = {}
    if not config.run_dir.exists():
        return {svc.name: "not running" for svc in todo}
    with process.locked(config.run_dir / ".stack.lock"):
        for svc in reversed(todo):  # clients of Kafka (none here yet) before Kafka
            pid = svc.pid()
            if pid is None:
                result[svc.name] = "not running"
                continue
            t0 = time.monotonic()
            killed = process.terminate(pid, timeout if timeout is not None else svc.stop_timeout, svc.stop_signal())
            svc.pid_file.unlink(missing_ok=True)
            how = "killed (SIGKILL after SIGTERM timed out)" if killed else "stopped"
            result[svc.name] = f"{how} (pid {pid}) in {time.monotonic() - t0:.1f}s"
            log.info("%s %s", svc.name, result[svc.name])
    return {svc.name: result[svc.name] for svc in todo}


def status(config: StackConfig) -> dict[str, ServiceStatus]:
    """Running (our pid file names a live process) and healthy (the address answers) for each service."""
    out: dict[str, ServiceStatus] = {}
    for svc in _services(config, ALL_SERVICES):
        here = config.runs_here(svc.name)
        pid = svc.pid() if here and config.run_dir.exists() else None
        try:
            healthy, detail = svc.safe_health()
        except StackError as e:  # a client package is missing
            healthy, detail = False, str(e)
        host = config.host_of(svc.name)
        if not here:
            where = f"on host {host.name}" if host is not None else "placed on no host"
            detail = f"{where}, {'healthy' if healthy else 'not answering'}: {detail}"
        elif pid is not None:
            detail = f"pid {pid}, {'healthy' if healthy else 'not healthy'}: {detail}"
        else:
            busy = [p for p in svc.ports().values() if process.port_in_use(p, svc.host_address)]
            if busy:
                detail = (f"not started by hft stack, but port {busy[0]} is in use by {process.port_owner(busy[0])}"
                          + (f" (answers: {detail})" if healthy else ""))
            else:
                detail = "not running"
        out[svc.name] = ServiceStatus(svc.name, pid is not None, healthy, pid, svc.address(), detail)
    return out


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines()) if text else "    (log is empty)"


def listening(config: StackConfig) -> dict[str, list[tuple[str, int]]]:
    """The listening TCP sockets (address, port) of each running service and every process below it."""
    out: dict[str, list[tuple[str, int]]] = {}
    for svc in _services(config, ALL_SERVICES):
        pid = svc.pid() if config.runs_here(svc.name) and config.run_dir.exists() else None
        if pid is not None:
            out[svc.name] = [(addr, port) for _, addr, port in process.listening_sockets(process.descendants(pid))]
    return out
