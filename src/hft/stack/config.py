"""Where the local stack lives and which ports it uses."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hft.config import Settings, env_value
from hft.errors import HftError
from hft.stack.hosts import HOST_ENV, HOSTS_FILE_ENV, Host, Hosts, HostsFileError
from hft.stack.hosts import read as read_hosts

#: The MLflow server's admin (MLflow's basic-auth app: nothing without a login but ``/health``), the variable
#: that gives its password and the name of the file it is generated into, under ``<HFT_HOME>/secrets``.
MLFLOW_USER = "admin"
MLFLOW_PASSWORD_ENV = "HFT_MLFLOW_PASSWORD"
MLFLOW_SECRET = "mlflow-password"

#: What ``hft stack up`` starts by default: the data path.
SERVICES: tuple[str, ...] = ("kafka", "redis", "mlflow")
#: Airflow: the API server (UI and REST API), the scheduler (LocalExecutor) and the DAG processor.
AIRFLOW_SERVICES: tuple[str, ...] = ("airflow-api", "airflow-scheduler", "airflow-dag-processor")
#: Monitoring: the Prometheus server, the exporters of the host and of Redis, Alertmanager and the project's
#: alert webhook (``hft.stack.monitoring``).
MONITORING_SERVICES: tuple[str, ...] = ("prometheus", "node-exporter", "redis-exporter", "alertmanager", "alert-hook")
#: Logs and search: one Elasticsearch 9.5 node and the log shipper that fills it (``hft.stack.elasticsearch``).
LOGGING_SERVICES: tuple[str, ...] = ("elasticsearch", "log-shipper")
#: Every service the stack knows, in start order (PostgreSQL first: MLflow and Airflow keep their state in it
#: when ``HFT_METADATA_DB=postgres``). ``spark``: the standalone cluster (``hft.stack.spark_cluster``), when the
#: stack runs workers.
ALL_SERVICES: tuple[str, ...] = ("postgres", *SERVICES, "spark", *AIRFLOW_SERVICES, *MONITORING_SERVICES,
                                 *LOGGING_SERVICES)
#: Where MLflow and Airflow keep their state: ``sqlite`` (embedded, no setup) or ``postgres`` (the stack's own
#: PostgreSQL server, the production backend).
METADATA_BACKENDS: tuple[str, ...] = ("sqlite", "postgres")
#: Names that stand for several services (``hft stack up --services kafka,airflow``).
#: ``all`` leaves PostgreSQL out: ``up`` adds it where the configuration needs it (``with_dependencies``).
GROUPS: dict[str, tuple[str, ...]] = {"airflow": AIRFLOW_SERVICES, "monitoring": MONITORING_SERVICES,
                                      "logging": LOGGING_SERVICES,
                                      "all": (*SERVICES, "spark", *AIRFLOW_SERVICES, *MONITORING_SERVICES,
                                              *LOGGING_SERVICES)}
HOST = "127.0.0.1"
#: Node ``i`` (1-based) of a Kafka cluster listens on the first node's ports plus ``(i - 1) * KAFKA_PORT_STEP``
#: (clients, controller, JMX metrics): 9092, 9102, 9112 for three brokers.
KAFKA_PORT_STEP = 10
#: Most Kafka nodes ``hft stack up`` runs on one machine.
MAX_KAFKA_BROKERS = 5
#: Redis Sentinels watching the master when the stack runs replicas (a majority of 2 agrees on a failover).
REDIS_SENTINELS = 3


def expand_services(names) -> tuple[str, ...]:
    """Service names with groups (``airflow``, ``monitoring``, ``logging``, ``all``) expanded, in the order given,
    without repeats."""
    out: list[str] = []
    for name in names:
        out.extend(GROUPS.get(name, (name,)))
    return tuple(dict.fromkeys(out))


class StackError(HftError):
    """The stack cannot do what was asked; the message says why and, where it can, what to do."""


#: The hosts file's ``[stack]`` settings: the fields below but the folders and the placement itself.
_NOT_SETTINGS = ("run_dir", "home", "postgres_data", "hosts", "host", "placement")


def new_kafka_cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (as ``kafka-storage random-uuid``)."""
    import base64
    import uuid

    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not cid.startswith("-"):
            return cid


def formatted_kafka_cluster(run_dir: Path) -> dict | None:
    """``{"cluster_id", "brokers"}`` of the Kafka cluster whose data is in ``run_dir`` (``kafka-cluster.json``,
    written when it was formatted); a node-1 store from before clusters: 1 broker, no id; None: nothing formatted."""
    import json

    path = run_dir / "kafka-cluster.json"
    if path.exists():
        try:
            return json.loads(path.read_text())
        except ValueError:
            raise StackError(f"{path} is not JSON: remove it, or the run directory's kafka* folders with it") from None
    if (run_dir / "kafka" / "data" / "meta.properties").exists():
        return {"cluster_id": None, "brokers": 1}
    return None


def formatted_kafka_brokers(run_dir: Path) -> int:
    """The size of the Kafka cluster formatted in ``run_dir``; 1 when there is none. Every client of a stack
    started with ``--kafka-brokers 3`` finds all three nodes without being told again."""
    return int((formatted_kafka_cluster(run_dir) or {"brokers": 1})["brokers"])


def started_spark_workers(run_dir: Path) -> int:
    """The Spark workers the stack runs in ``run_dir`` (their pid files); 0 when none, 1 when only the master's
    is left (so ``down`` still finds the master)."""
    workers = len(list(Path(run_dir).glob("spark-worker-*.pid")))
    return workers or int((Path(run_dir) / "spark-master.pid").exists())


def started_redis_replicas(run_dir: Path) -> int:
    """The Redis replicas the stack last started in ``run_dir`` (``redis-replication.json``); 0 when none."""
    import json

    try:
        return int(json.loads((run_dir / "redis-replication.json").read_text())["replicas"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def _count(name: str, default: int, minimum: int = 1) -> int:
    from hft.config import env_count

    try:
        return env_count(name, default, minimum)
    except ValueError as e:
        raise StackError(str(e)) from None


def _port(name: str, default: int) -> int:
    raw = env_value(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise StackError(f"{name}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise StackError(f"{name}={port} is not a port number (1-65535)")
    return port


@dataclass(frozen=True)
class StackConfig:
    """Ports, heap and folders of the local stack.

    Attributes:
        run_dir: data, configs, logs (``<service>.log``) and pid files (``<service>.pid``) of every service.
        kafka_port: the broker's PLAINTEXT listener (clients).
        kafka_controller_port: the KRaft controller listener.
        kafka_metrics_port: the broker's Prometheus JMX exporter agent (``/metrics``).
        redis_port, mlflow_port: as named.
        airflow_port: Airflow's API server (UI, REST API and the execution API its workers call).
        postgres_port: the stack's PostgreSQL server (when ``metadata_db`` is ``postgres``).
        metadata_db: ``sqlite`` (default: MLflow's ``mlflow.db`` and Airflow's ``airflow.db`` files) or
            ``postgres`` (databases ``mlflow`` and ``airflow`` on the stack's PostgreSQL, started with them).
        postgres_data: PostgreSQL's data folder; default ``<run_dir>/postgres``.
        prometheus_port, node_exporter_port, redis_exporter_port, alertmanager_port, alert_hook_port: the
            monitoring services.
        kafka_heap: the broker JVM's ``-Xmx``.
        kafka_brokers: Kafka nodes (KRaft, each broker and controller); 1 (the default) or 3 and more for a
            cluster where topics have 3 replicas and ``min.insync.replicas=2``. Node ``i``'s ports are the
            ``kafka_*_port`` fields plus ``(i - 1) * KAFKA_PORT_STEP`` (:meth:`kafka_node_ports`).
        redis_replicas: Redis replicas of the master (0: one Redis, no Sentinel). With 1 or more (2 is the
            useful number: after a failover the new master still has a replica to acknowledge writes), the stack
            also runs :data:`REDIS_SENTINELS` Sentinels, and clients find the master through them
            (:attr:`redis_url` is then a ``redis+sentinel://`` URL, :mod:`hft.redis_conn`). Redis node ``i`` listens
            on ``redis_port + i - 1``, Sentinel ``k`` on ``redis_sentinel_port + k - 1``.
        redis_sentinel_port: the first Sentinel's port.
        elasticsearch_port: the Elasticsearch node's HTTP API (clients: :attr:`elasticsearch_url`).
        elasticsearch_transport_port: the node's transport (node-to-node) port; bound to 127.0.0.1 like HTTP.
        elasticsearch_heap: the Elasticsearch JVM's ``-Xmx`` (``1g``; an idle node holds ~350-450 MB resident).
        log_shipper_port: the log shipper's ``/metrics`` (its health check).
        spark_workers: workers of the Spark standalone cluster (0: no cluster; ``hft.stack.spark_cluster``).
        spark_master_port: the master's RPC port (:attr:`spark_master_url`).
        spark_ui_port: the master's web UI; worker ``n``'s is ``spark_ui_port + n``.
        spark_worker_cores, spark_worker_memory: what each worker offers its executors.
        home: ``HFT_HOME``; MLflow keeps ``mlflow.db`` and ``mlartifacts/`` here, where the CLI finds them
            when ``MLFLOW_TRACKING_URI`` is unset. Defaults to the parent of ``run_dir``.
        kafka_cluster_id: the Kafka cluster's id, given (by a hosts file: every host formats its nodes with
            it) or None (node 1 makes one when it first formats, ``kafka-cluster.json``).
        hosts: the deployment's hosts file (:mod:`hft.stack.hosts`); None: everything on 127.0.0.1.
        host: which of its hosts this machine is (``HFT_HOST``): ``up`` and ``down`` act on its services only.
        placement: ``{service: host}``, filled in from ``hosts`` (:meth:`address_of`, :meth:`runs_here`).
    """

    run_dir: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    mlflow_port: int = 5000
    airflow_port: int = 8080
    postgres_port: int = 5433
    metadata_db: str = "sqlite"
    postgres_data: Path | None = None
    prometheus_port: int = 9090
    node_exporter_port: int = 9100
    redis_exporter_port: int = 9121
    alertmanager_port: int = 9095
    alert_hook_port: int = 9096
    kafka_metrics_port: int = 9404
    kafka_heap: str = "512m"
    kafka_brokers: int = 1
    redis_replicas: int = 0
    redis_sentinel_port: int = 26379
    elasticsearch_port: int = 9200
    elasticsearch_transport_port: int = 9300
    elasticsearch_heap: str = "1g"
    log_shipper_port: int = 9111
    spark_workers: int = 0
    spark_master_port: int = 7077
    spark_ui_port: int = 8091
    spark_worker_cores: int = 1
    spark_worker_memory: str = "1g"
    home: Path | None = None
    kafka_cluster_id: str | None = None
    hosts: Hosts | None = field(default=None, compare=False)
    host: str | None = None
    placement: dict[str, Host] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        run_dir = Path(self.run_dir).absolute()
        object.__setattr__(self, "run_dir", run_dir)
        object.__setattr__(self, "home", Path(self.home).absolute() if self.home is not None else run_dir.parent)
        data = Path(self.postgres_data).absolute() if self.postgres_data is not None else run_dir / "postgres"
        object.__setattr__(self, "postgres_data", data)
        if self.metadata_db not in METADATA_BACKENDS:
            raise StackError(f"HFT_METADATA_DB={self.metadata_db!r}: pick one of {', '.join(METADATA_BACKENDS)}")
        if not 1 <= self.kafka_brokers <= MAX_KAFKA_BROKERS:
            raise StackError(f"HFT_KAFKA_BROKERS={self.kafka_brokers}: pick 1 to {MAX_KAFKA_BROKERS} "
                             "(3 for a cluster that survives the loss of a broker)")
        if not 0 <= self.spark_workers <= 8:
            raise StackError(f"HFT_SPARK_WORKERS={self.spark_workers}: pick 0 to 8")
        if not 0 <= self.redis_replicas <= 4:
            raise StackError(f"HFT_REDIS_REPLICAS={self.redis_replicas}: pick 0 to 4 (2 for a master that fails over)")
        ports = {
            "redis_port": self.redis_port,
            "mlflow_port": self.mlflow_port,
            "airflow_port": self.airflow_port,
            "postgres_port": self.postgres_port,
            "prometheus_port": self.prometheus_port,
            "node_exporter_port": self.node_exporter_port,
            "redis_exporter_port": self.redis_exporter_port,
            "alertmanager_port": self.alertmanager_port,
            "alert_hook_port": self.alert_hook_port,
            "elasticsearch_port": self.elasticsearch_port,
            "elasticsearch_transport_port": self.elasticsearch_transport_port,
            "log_shipper_port": self.log_shipper_port,
        }
        if self.spark_workers:
            ports["spark_master_port"] = self.spark_master_port
            for n in range(0, self.spark_workers + 1):
                ports[f"spark_ui_port{f' (worker {n})' if n else ''}"] = self.spark_ui_port + n
        for node in range(2, self.redis_replicas + 2):
            ports[f"redis_port (replica {node - 1})"] = self.redis_node_port(node)
        for k in range(1, (REDIS_SENTINELS if self.redis_replicas else 0) + 1):
            ports[f"redis_sentinel_port (sentinel {k})"] = self.redis_sentinel_port + k - 1
        for node in range(1, self.kafka_brokers + 1):
            suffix = "" if node == 1 else f" (node {node})"
            client, controller, metrics = self.kafka_node_ports(node)
            ports.update({f"kafka_port{suffix}": client, f"kafka_controller_port{suffix}": controller,
                          f"kafka_metrics_port{suffix}": metrics})
        if any(not 1 <= p <= 65535 for p in ports.values()):
            raise StackError(f"a port out of range (1-65535): {ports}")
        if len(set(ports.values())) != len(ports):
            raise StackError(f"two services share a port: {ports}")
        object.__setattr__(self, "placement", self._place(self.hosts) if self.hosts is not None else {})

    def _place(self, hosts: Hosts) -> dict[str, Host]:
        known = set(self.members("all")) | {"postgres"}
        try:
            where = hosts.place(self.members, known)
            if self.host is not None:
                hosts.host(self.host)
        except HostsFileError as e:
            raise StackError(str(e)) from None
        kafka_hosts = {where[n].name for n in self.members("kafka") if n in where}
        if len(kafka_hosts) > 1 and not self.kafka_cluster_id:
            raise StackError(f"{hosts.path}: Kafka's nodes run on {len(kafka_hosts)} hosts, which must format them "
                             f"with the same cluster id: add `kafka_cluster_id = \"{new_kafka_cluster_id()}\"` to "
                             "[stack]")
        return where

    def members(self, name: str) -> tuple[str, ...]:
        """The services a name stands for: a group's members (``kafka``: every node, ``redis``: the nodes and the
        Sentinels, ``spark``: the master and the workers when there are workers, ``airflow``, ``monitoring``,
        ``logging``, ``all``), a service itself."""
        if name == "kafka":
            return ("kafka", *(f"kafka-{n}" for n in range(2, self.kafka_brokers + 1)))
        if name == "redis":
            return ("redis", *(f"redis-{n}" for n in range(2, self.redis_replicas + 2)),
                    *(f"sentinel-{k}" for k in range(1, len(self.redis_sentinels) + 1)))
        if name == "spark":
            return ("spark-master", *(f"spark-worker-{n}" for n in range(1, self.spark_workers + 1))) \
                if self.spark_workers else ()
        if name in GROUPS:
            return tuple(m for g in GROUPS[name] for m in self.members(g))
        return (name,)

    def address_of(self, service: str) -> str:
        """Where ``service`` (``kafka-2``, ``spark-master``...) listens: its host's address in the hosts file, else
        127.0.0.1."""
        host = self.placement.get(service)
        return host.address if host is not None else HOST

    def host_of(self, service: str) -> Host | None:
        """The host that runs ``service`` (None: no hosts file, or the file does not place it)."""
        return self.placement.get(service)

    def runs_here(self, service: str) -> bool:
        """This machine runs ``service``: no hosts file, or the file places it on :attr:`host`."""
        if self.hosts is None:
            return True
        host = self.placement.get(service)
        return host is not None and host.name == self.host

    @property
    def tls(self) -> bool:
        """The hosts file says ``tls = true``: Kafka, Redis and Spark encrypt their connections (:mod:`hft.tls`)."""
        return self.hosts is not None and self.hosts.tls

    @property
    def http_scheme(self) -> str:
        """``https`` with TLS (the UIs and APIs of MLflow, Airflow, Prometheus, Alertmanager, the alert hook), else
        ``http``."""
        return "https" if self.tls else "http"

    @property
    def local_address(self) -> str:
        """This machine's address in the deployment (its host's), for what it serves itself (a Spark driver)."""
        return self.hosts.host(self.host).address if self.hosts is not None and self.host else HOST

    @classmethod
    def from_env(cls) -> StackConfig:
        """``HFT_HOME`` (default ``./var``; the run directory is ``<HFT_HOME>/run``), ``HFT_KAFKA_PORT``,
        ``HFT_KAFKA_CONTROLLER_PORT``, ``HFT_REDIS_PORT``, ``HFT_MLFLOW_PORT``, ``HFT_AIRFLOW_PORT``,
        ``HFT_POSTGRES_PORT`` (5433: clear of a system PostgreSQL on 5432), ``HFT_METADATA_DB`` (``sqlite`` or
        ``postgres``), ``HFT_POSTGRES_DATA``, ``HFT_PROMETHEUS_PORT``, ``HFT_NODE_EXPORTER_PORT``,
        ``HFT_REDIS_EXPORTER_PORT``, ``HFT_ALERTMANAGER_PORT`` (9095: Kafka's controller has 9093),
        ``HFT_ALERT_HOOK_PORT``, ``HFT_KAFKA_METRICS_PORT`` (the broker's JMX exporter), ``HFT_KAFKA_HEAP``,
        ``HFT_KAFKA_BROKERS`` (default: the size of the cluster formatted in the run directory, else 1),
        ``HFT_REDIS_REPLICAS`` (default: as many as the stack last started in the run directory, else 0),
        ``HFT_REDIS_SENTINEL_PORT`` (26379),
        ``HFT_ELASTICSEARCH_PORT`` (9200), ``HFT_ELASTICSEARCH_TRANSPORT_PORT`` (9300), ``HFT_ELASTICSEARCH_HEAP``
        (``1g``), ``HFT_LOG_SHIPPER_PORT`` (9111), ``HFT_SPARK_WORKERS`` (default: as many as run in the run
        directory, else 0), ``HFT_SPARK_MASTER_PORT`` (7077), ``HFT_SPARK_UI_PORT`` (8091),
        ``HFT_SPARK_WORKER_CORES`` (1), ``HFT_SPARK_WORKER_MEMORY`` (``1g``)."""
        home = Settings.from_env().home
        data = env_value("HFT_POSTGRES_DATA", "")
        hosts_file = env_value(HOSTS_FILE_ENV, "")
        if hosts_file:
            try:
                hosts = read_hosts(hosts_file)
            except HostsFileError as e:
                raise StackError(str(e)) from None
            return cls._with_hosts(hosts, home, Path(data) if data else None)
        return cls(
            run_dir=home / "run",
            kafka_port=_port("HFT_KAFKA_PORT", 9092),
            kafka_controller_port=_port("HFT_KAFKA_CONTROLLER_PORT", 9093),
            redis_port=_port("HFT_REDIS_PORT", 6379),
            mlflow_port=_port("HFT_MLFLOW_PORT", 5000),
            airflow_port=_port("HFT_AIRFLOW_PORT", 8080),
            postgres_port=_port("HFT_POSTGRES_PORT", 5433),
            metadata_db=env_value("HFT_METADATA_DB", "sqlite").strip().lower(),
            postgres_data=Path(data) if data else None,
            prometheus_port=_port("HFT_PROMETHEUS_PORT", 9090),
            node_exporter_port=_port("HFT_NODE_EXPORTER_PORT", 9100),
            redis_exporter_port=_port("HFT_REDIS_EXPORTER_PORT", 9121),
            alertmanager_port=_port("HFT_ALERTMANAGER_PORT", 9095),
            alert_hook_port=_port("HFT_ALERT_HOOK_PORT", 9096),
            kafka_metrics_port=_port("HFT_KAFKA_METRICS_PORT", 9404),
            kafka_heap=env_value("HFT_KAFKA_HEAP", "512m"),
            kafka_brokers=_count("HFT_KAFKA_BROKERS", formatted_kafka_brokers(home / "run")),
            redis_replicas=_count("HFT_REDIS_REPLICAS", started_redis_replicas(home / "run"), minimum=0),
            redis_sentinel_port=_port("HFT_REDIS_SENTINEL_PORT", 26379),
            elasticsearch_port=_port("HFT_ELASTICSEARCH_PORT", 9200),
            elasticsearch_transport_port=_port("HFT_ELASTICSEARCH_TRANSPORT_PORT", 9300),
            elasticsearch_heap=env_value("HFT_ELASTICSEARCH_HEAP", "1g"),
            log_shipper_port=_port("HFT_LOG_SHIPPER_PORT", 9111),
            spark_workers=_count("HFT_SPARK_WORKERS", started_spark_workers(home / "run"), minimum=0),
            spark_master_port=_port("HFT_SPARK_MASTER_PORT", 7077),
            spark_ui_port=_port("HFT_SPARK_UI_PORT", 8091),
            spark_worker_cores=_count("HFT_SPARK_WORKER_CORES", 1),
            spark_worker_memory=env_value("HFT_SPARK_WORKER_MEMORY", "1g"),
            home=home,
        )

    @classmethod
    def _with_hosts(cls, hosts: Hosts, home: Path, postgres_data: Path | None) -> StackConfig:
        """The configuration a hosts file describes: its ``[stack]`` settings (an ``HFT_*`` variable that says
        otherwise is an error: every host must see the same deployment), this machine's host from ``HFT_HOST``
        (the only host when there is one)."""
        names = {f.name: f for f in fields(cls) if f.name not in _NOT_SETTINGS}
        settings: dict[str, Any] = dict(hosts.settings)
        unknown = set(settings) - set(names)
        if unknown:
            raise StackError(f"{hosts.path}: unknown setting(s) in [stack]: {', '.join(sorted(unknown))} "
                             f"(known: {', '.join(sorted(names))})")
        for key, value in settings.items():
            env = "HFT_" + key.upper()
            raw = os.environ.get(env)
            if raw is not None and raw.strip() != str(value):
                raise StackError(f"{env}={raw} but {hosts.path} says {key} = {value!r}: every host must see the same "
                                 f"deployment; unset {env} (or change the file on every host)")
            want = int if names[key].type in ("int",) else str
            if want is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise StackError(f"{hosts.path}: [stack] {key} must be a whole number, not {value!r}")
            if want is str and not isinstance(value, str):
                raise StackError(f"{hosts.path}: [stack] {key} must be a string, not {value!r}")
        host = env_value(HOST_ENV, "") or (hosts.hosts[0].name if len(hosts.hosts) == 1 else None)
        return cls(run_dir=home / "run", home=home, postgres_data=postgres_data, hosts=hosts, host=host, **settings)

    def kafka_node_ports(self, node: int) -> tuple[int, int, int]:
        """(client, controller, JMX metrics) ports of Kafka node ``node`` (1-based)."""
        step = (node - 1) * KAFKA_PORT_STEP
        return self.kafka_port + step, self.kafka_controller_port + step, self.kafka_metrics_port + step

    @property
    def kafka_bootstrap(self) -> str:
        """Every node's client listener (``host:port,...``): a client reaches the cluster while one is down."""
        return ",".join(f"{self.kafka_node_address(n)}:{self.kafka_node_ports(n)[0]}"
                        for n in range(1, self.kafka_brokers + 1))

    @property
    def kafka_quorum(self) -> str:
        """The KRaft voters (``id@host:controller_port,...``)."""
        return ",".join(f"{n}@{self.kafka_node_address(n)}:{self.kafka_node_ports(n)[1]}"
                        for n in range(1, self.kafka_brokers + 1))

    def kafka_node_address(self, node: int) -> str:
        return self.address_of("kafka" if node == 1 else f"kafka-{node}")

    def redis_node_port(self, node: int) -> int:
        """Redis node ``node`` (1: the first master; 2...: its replicas)."""
        return self.redis_port + node - 1

    @property
    def redis_sentinels(self) -> list[int]:
        """The Sentinels' ports (none without replicas)."""
        return [self.redis_sentinel_port + k for k in range(REDIS_SENTINELS if self.redis_replicas else 0)]

    @property
    def redis_url(self) -> str:
        """What clients use (:func:`hft.redis_conn.connect`): the master through the Sentinels when the stack has
        replicas, else the one Redis."""
        if self.redis_replicas:
            from hft.redis_conn import MASTER_NAME, SENTINEL_SCHEME, SENTINEL_TLS_SCHEME, USER

            hosts = ",".join(f"{self.address_of(f'sentinel-{k}')}:{p}" for k, p in enumerate(self.redis_sentinels, 1))
            scheme = SENTINEL_TLS_SCHEME if self.tls else SENTINEL_SCHEME
            return f"{scheme}://{USER}@{hosts}/{MASTER_NAME}/0?{self._redis_password_query}"
        return self.redis_node_url(1)

    def redis_node_url(self, node: int) -> str:
        """One Redis node, directly (the exporter, health checks)."""
        return self.redis_url_on(self.redis_node_port(node), self.redis_node_address(node))

    def redis_node_address(self, node: int) -> str:
        return self.address_of("redis" if node == 1 else f"redis-{node}")

    def redis_url_on(self, port: int, address: str = HOST) -> str:
        """The Redis node or Sentinel at ``address:port``, logged in as the stack's user."""
        from hft.redis_conn import USER

        return f"{'rediss' if self.tls else 'redis'}://{USER}@{address}:{port}/0?{self._redis_password_query}"

    @property
    def redis_password_file(self) -> Path:
        """Where the stack keeps its Redis user's password (unless ``HFT_REDIS_PASSWORD`` gives it)."""
        assert self.home is not None  # filled in by __post_init__
        return self.home / "secrets" / "redis-password"

    @property
    def _redis_password_query(self) -> str:
        from urllib.parse import urlencode

        return urlencode({"password_file": str(self.redis_password_file)})

    @property
    def spark_master_url(self) -> str:
        """The standalone cluster's master (``hft stream --master``)."""
        return f"spark://{self.address_of('spark-master')}:{self.spark_master_port}"

    @property
    def mlflow_uri(self) -> str:
        return f"{self.http_scheme}://{self.address_of('mlflow')}:{self.mlflow_port}"

    @property
    def prometheus_url(self) -> str:
        return f"{self.http_scheme}://{self.address_of('prometheus')}:{self.prometheus_port}"

    @property
    def elasticsearch_url(self) -> str:
        """The Elasticsearch node's HTTP API (``elasticsearch.Elasticsearch(cfg.elasticsearch_url)``)."""
        return f"http://{self.address_of('elasticsearch')}:{self.elasticsearch_port}"

    @property
    def airflow_url(self) -> str:
        return f"{self.http_scheme}://{self.address_of('airflow-api')}:{self.airflow_port}"

    @property
    def airflow_home(self) -> Path:
        """``AIRFLOW_HOME`` of the stack's Airflow: ``<HFT_HOME>/airflow`` (airflow.cfg, logs, database)."""
        assert self.home is not None
        return self.home / "airflow"


def repo_root() -> Path:
    """The checkout holding ``infra/`` and ``build/`` (``HFT_REPO_ROOT``, else the one this package is in).

    This file is ``<root>/src/hft/stack/config.py``: ``parents[3]`` is the root (an editable install keeps
    ``__file__`` in the checkout).
    """
    env = os.environ.get("HFT_REPO_ROOT")
    return Path(env).absolute() if env else Path(__file__).resolve().parents[3]


def infra_file(*parts: str) -> Path:
    path = repo_root().joinpath("infra", *parts)
    if not path.is_file():
        raise StackError(f"{path} not found (set HFT_REPO_ROOT to the checkout)")
    return path
