"""Helpers for the local-stack tests: free loopback ports and a StackConfig under a temporary folder."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from hft.stack import StackConfig


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


def make_config(base: Path) -> StackConfig:
    kafka, controller, redis, mlflow = free_ports(4)
    return StackConfig(run_dir=base / "run", kafka_port=kafka, kafka_controller_port=controller,
                       redis_port=redis, mlflow_port=mlflow, home=base)


@pytest.fixture(scope="session")
def make_stack_config():
    """``make_stack_config(base)``: a StackConfig with run dir ``base/run``, home ``base`` and free ports."""
    return make_config
