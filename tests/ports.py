"""Free loopback ports for tests that start real services, and a StackConfig that uses them."""

from __future__ import annotations

import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports that are free right now (all held open together while picking)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_stack_config(base: Path):
    """A StackConfig with run dir ``base/run``, home ``base`` and free ports for every service."""
    from hft.stack import StackConfig

    kafka, controller, redis, mlflow, airflow = free_ports(5)
    return StackConfig(run_dir=base / "run", kafka_port=kafka, kafka_controller_port=controller,
                       redis_port=redis, mlflow_port=mlflow, airflow_port=airflow, home=base)
