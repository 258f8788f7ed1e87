"""``hft stack``: start, stop and check the services (Kafka, Redis, MLflow, Airflow, PostgreSQL, Prometheus...) on
127.0.0.1, or this machine's part of a deployment a hosts file describes (``--hosts-file``, ``--host``)."""

from __future__ import annotations

import argparse

from hft.cli._common import EXIT_FAILED, EXIT_OK, out, stack_config
from hft.config import Settings


def cmd_stack(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    import os

    from hft import stack
    from hft.stack.hosts import HOST_ENV, HOSTS_FILE_ENV

    if args.hosts_file:
        os.environ[HOSTS_FILE_ENV] = args.hosts_file
    if args.host:
        os.environ[HOST_ENV] = args.host
    config = stack_config()
    sizes = {"--kafka-brokers": args.kafka_brokers, "--redis-replicas": args.redis_replicas,
             "--spark-workers": args.spark_workers}
    given = [flag for flag, value in sizes.items() if value is not None]
    if config.hosts is not None and given:
        raise stack.StackError(f"{', '.join(given)}: the hosts file {config.hosts.path} sets the deployment's sizes "
                               "([stack] kafka_brokers, redis_replicas, spark_workers)")
    if args.kafka_brokers is not None:
        config = dataclasses.replace(config, kafka_brokers=args.kafka_brokers)
    if args.redis_replicas is not None:
        config = dataclasses.replace(config, redis_replicas=args.redis_replicas)
    if args.spark_workers is not None:
        config = dataclasses.replace(config, spark_workers=args.spark_workers)
    default = stack.SERVICES if args.action == "up" else stack.ALL_SERVICES
    if config.hosts is not None and args.action == "up":  # what the file places on this machine
        default = tuple(name for name, host in config.placement.items() if host.name == config.host)
    services = stack.expand_services(args.services.split(",")) if args.services else default
    if args.spark_workers and "spark" not in services:
        services = (*services, "spark")
    if args.action == "up":
        services = stack.with_dependencies(config, services)
    if args.action == "up":
        stack.up(config, services)
        if "kafka" in services or any(n.startswith("kafka-") for n in services):
            stack.ensure_topics(config.kafka_bootstrap, stack.stream_topics())
        if "mlflow" in services:
            from hft.stack.config import MLFLOW_PASSWORD_ENV, MLFLOW_SECRET, MLFLOW_USER

            out(f"MLflow UI: {config.mlflow_uri} (user {MLFLOW_USER!r}, password {MLFLOW_PASSWORD_ENV} or "
                f"{config.home}/secrets/{MLFLOW_SECRET})")
        if "airflow-api" in services:
            user, where = stack.airflow_login(config)
            out(f"Airflow UI: {config.airflow_url} (user {user!r}, password {where})")
        if "prometheus" in services:
            from hft.stack.monitoring import ui_credentials

            user, _ = ui_credentials(config)
            out(f"Prometheus UI: {config.prometheus_url} (alerts: {config.prometheus_url}/classic/alerts, dashboard: "
                f"{config.prometheus_url}/consoles/hft.html; user {user!r}, password HFT_PROMETHEUS_PASSWORD or "
                f"{config.home}/secrets/prometheus-password)")
        if "spark" in services and config.spark_workers:
            from hft.stack.spark_cluster import UI_USER

            out(f"Spark master: {config.spark_master_url} (UI http://{config.address_of('spark-master')}:"
                f"{config.spark_ui_port}, user "
                f"{UI_USER!r}, password HFT_SPARK_UI_PASSWORD or {config.home}/secrets/spark-ui-password; "
                f"hft stream --engine tasks --master {config.spark_master_url})")
        if "elasticsearch" in services:
            out(f"Elasticsearch: {config.elasticsearch_url} (search: hft logs search --help)")
    elif args.action == "down":
        stack.down(config, services)
    elif args.action == "jars":
        out(",".join(stack.streaming_jars()))
        return EXIT_OK
    healthy = True
    for name, st in stack.status(config).items():
        # shown by status when running
        optional = (*stack.AIRFLOW_SERVICES, *stack.MONITORING_SERVICES, *stack.LOGGING_SERVICES, "postgres")
        node = any(name in config.members(group) for group in services)
        if (name not in services and not node) or (args.action == "status" and not args.services and not st.running
                                    and name in optional):
            continue
        healthy &= st.healthy or args.action != "up"  # `up` must end healthy; status/down only report
        out(f"{name:<21} {'running' if st.running else 'stopped':<8} {'healthy' if st.healthy else '-':<8} "
            f"pid={st.pid or '-'} {st.address} {st.detail or ''}".rstrip())
    return EXIT_OK if healthy else EXIT_FAILED


def register(sub) -> None:
    p = sub.add_parser("stack", help="start, stop or check the local Kafka, Redis, MLflow and Airflow")
    p.add_argument("action", choices=["up", "down", "status", "jars"])
    p.add_argument("--services", help="comma-separated services or groups: kafka, redis, mlflow, airflow-api, "
                   "airflow-scheduler, airflow-dag-processor, postgres, prometheus, node-exporter, redis-exporter, "
                   "alertmanager, alert-hook, elasticsearch, log-shipper, spark (with --spark-workers); airflow (its three), "
                   "monitoring (prometheus to alert-hook), logging (elasticsearch, log-shipper), all. Default: up "
                   "starts kafka,redis,mlflow (and postgres first with HFT_METADATA_DB=postgres); down stops "
                   "everything; status shows the data path, and Airflow and PostgreSQL when running")
    p.add_argument("--hosts-file", default=None, metavar="FILE",
                   help="the deployment's hosts file (TOML: each host's address and services, the shared settings; "
                   "infra/hosts.example.toml). Default HFT_HOSTS_FILE; none: everything on 127.0.0.1")
    p.add_argument("--host", default=None, metavar="NAME",
                   help="which host of the hosts file this machine is: up starts (down stops) its services only; "
                   "up without --services starts all of them. Default HFT_HOST")
    p.add_argument("--kafka-brokers", type=int, default=None, metavar="N",
                   help="Kafka nodes: 1, or 3 for a cluster (topics with 3 replicas, min.insync.replicas=2) that "
                   "loses no acknowledged message when a broker dies. Default HFT_KAFKA_BROKERS, else the size "
                   "of the cluster already in HFT_HOME, else 1; later commands find the cluster by themselves")
    p.add_argument("--redis-replicas", type=int, default=None, metavar="N",
                   help="Redis replicas of the master, watched by 3 Sentinels that fail over to one when the master "
                   "dies (2: a new master still has a replica to acknowledge writes). Default HFT_REDIS_REPLICAS, "
                   "else as many as the stack last ran in HFT_HOME, else 0")
    p.add_argument("--spark-workers", type=int, default=None, metavar="N",
                   help="a Spark standalone cluster: a master and N workers (HFT_SPARK_WORKER_CORES cores each), for "
                   "hft stream --engine tasks --master spark://127.0.0.1:7077. Default HFT_SPARK_WORKERS, else as "
                   "many as run in HFT_HOME, else 0")
    p.set_defaults(func=cmd_stack)
