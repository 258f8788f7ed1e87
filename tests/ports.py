"""Free loopback ports for tests that start real services, and a StackConfig that uses them."""

from __future__ import annotations

import os
import random
import socket
import time
from contextlib import contextmanager
from pathlib import Path


def _ephemeral_start() -> int:
    """The first port the kernel hands to client sockets (``ip_local_port_range``; 32768 when unknown)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Test services listen on ports from here to below the ephemeral range: a port the kernel picked with
#: ``bind(0)`` lies in the range every outgoing connection draws from, so between the pick and the service's
#: start a client socket could take it ("port in use", seen in CI).
_LOW = 20000


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports, below the ephemeral range, that are free right now (all held open together
    while picking; drawn at random so that test processes side by side rarely try the same ones)."""
    rng = random.Random(os.getpid() ^ time.time_ns())
    high = max(_LOW + 1000, _ephemeral_start())
    socks: list[socket.socket] = []
    try:
        while len(socks) < n:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", rng.randrange(_LOW, high)))
            except OSError:  # taken (or held by us already): draw again
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_stack_config(base: Path, **options):
    """A StackConfig with run dir ``base/run``, home ``base`` and free ports for every service; ``options``
    (``metadata_db``, ``postgres_data``, ...) as StackConfig takes them."""
    from hft.stack import StackConfig

    (kafka, controller, redis, mlflow, airflow, postgres, prometheus, node, redis_exporter, alertmanager,
     alert_hook, kafka_metrics, elasticsearch, elasticsearch_transport, log_shipper) = free_ports(15)
    return StackConfig(run_dir=base / "run", kafka_port=kafka, kafka_controller_port=controller,
                       redis_port=redis, mlflow_port=mlflow, airflow_port=airflow, postgres_port=postgres,
                       prometheus_port=prometheus, node_exporter_port=node, redis_exporter_port=redis_exporter,
                       alertmanager_port=alertmanager, alert_hook_port=alert_hook, kafka_metrics_port=kafka_metrics,
                       elasticsearch_port=elasticsearch, elasticsearch_transport_port=elasticsearch_transport,
                       log_shipper_port=log_shipper,
                       home=base, **options)


@contextmanager
def stack_home(cfg):
    """``HFT_HOME`` set to ``cfg``'s home meanwhile, as for every hft process of that stack: the clients made
    here (and the processes started) find the stack's secrets there (its Kafka user's password)."""
    from unittest import mock

    with mock.patch.dict(os.environ, {"HFT_HOME": str(cfg.home)}):
        yield


def postgres_data_dir() -> Path:
    """A fresh folder for a test's PostgreSQL data that the ``postgres`` user can reach when tests run as root
    (pytest's own temporary folders are private to their user). The caller removes it."""
    import os
    import tempfile

    top = Path(tempfile.mkdtemp(prefix="hft-test-pg-"))
    os.chmod(top, 0o755)
    return top / "data"


def free_kafka_ports(nodes: int, step: int = 10) -> tuple[int, int, int]:
    """Base (client, controller, metrics) ports for a Kafka cluster of ``nodes``: node ``i`` adds
    ``(i - 1) * step`` (``hft.stack.config.KAFKA_PORT_STEP``), and every one of those ports is free now."""
    import random

    def free(port: int) -> bool:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return True
            except OSError:
                return False

    for _ in range(200):
        bases = [random.randrange(20_000, 60_000) for _ in range(3)]
        ports = [b + k * step for b in bases for k in range(nodes)]
        if len(set(ports)) == len(ports) and all(free(p) for p in ports):
            return bases[0], bases[1], bases[2]
    raise RuntimeError("no free ports for a Kafka cluster")
