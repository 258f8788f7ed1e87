"""Which machine runs which service: one file that every process of a deployment reads.

The hosts file (TOML, ``HFT_HOSTS_FILE``; an example in ``infra/hosts.example.toml``) names each host with its
address and the services it runs, and the stack's settings shared by all (sizes, ports: the fields of
:class:`hft.stack.config.StackConfig`)::

    [stack]
    kafka_brokers = 3
    kafka_cluster_id = "q1Sh-9_ISia_zwGINzRvyQ"   # when Kafka's nodes are on more than one host
    spark_workers = 2

    [hosts.a]
    address = "10.0.0.11"
    services = ["kafka", "redis", "mlflow", "spark", "monitoring"]

    [hosts.b]
    address = "10.0.0.12"
    services = ["kafka-2", "spark-worker-2"]

A group (``kafka``, ``redis``, ``spark``, ``airflow``, ``monitoring``, ``logging``, ``all``) places every member
that no host names on its own: above, Kafka nodes 1 and 3 and Spark's master and worker 1 run on ``a``. Each
machine starts its part with ``hft stack up --host a`` (or ``HFT_HOST=a``), with its own ``HFT_HOME``; every
client (the stream, the executor, the CLI) finds each service at its host's address through the same file.

Services without authentication of their own (Elasticsearch and its shipper, the node and Redis exporters)
may only be placed on loopback addresses. ``tls = true`` at the top of the file encrypts Kafka's, Redis's and
Spark's connections with the deployment's own CA (:mod:`hft.tls`). A file with a host whose address leaves
loopback must say it, or ``allow_plaintext = true`` (logins still required, traffic in clear: a private network
you trust).
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from hft.errors import HftError

HOSTS_FILE_ENV = "HFT_HOSTS_FILE"
HOST_ENV = "HFT_HOST"
#: Services that serve without a login: only on loopback addresses (unreachable from other machines).
LOOPBACK_ONLY: tuple[str, ...] = ("elasticsearch", "log-shipper", "node-exporter", "redis-exporter")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_ADDRESS = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


class HostsFileError(HftError):
    """The hosts file cannot be used; the message names the file and what to change."""


@dataclass(frozen=True)
class Host:
    name: str
    address: str
    services: tuple[str, ...]  # as written: groups and single services

    @property
    def loopback(self) -> bool:
        try:
            return ipaddress.ip_address(self.address).is_loopback
        except ValueError:
            return self.address == "localhost"


@dataclass(frozen=True)
class Hosts:
    """A parsed hosts file: its hosts in file order and the ``[stack]`` settings (StackConfig fields)."""

    path: Path
    hosts: tuple[Host, ...]
    settings: tuple[tuple[str, object], ...]
    allow_plaintext: bool = False
    tls: bool = False

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise HostsFileError(f"{self.path}: no host {name!r} (hosts: {', '.join(h.name for h in self.hosts)})")

    def place(self, members, known: set[str]) -> dict[str, Host]:
        """``{service: host}``: single services where a host names them, then the members of the groups a host
        names that no host names alone. ``members(name)`` expands a group (a service: itself); ``known``: every
        service the configuration has."""
        where: dict[str, Host] = {}
        groups: list[tuple[str, Host]] = []
        for h in self.hosts:
            for name in h.services:
                if name not in known and not _is_group_name(name):
                    raise HostsFileError(f"{self.path}: host {h.name} names {name!r}, which this configuration "
                                         f"does not have (services: {', '.join(sorted(known))}, and groups)")
                if members(name) == (name,):
                    if name in where:
                        raise HostsFileError(f"{self.path}: {name} is placed on both {where[name].name} and {h.name}")
                    where[name] = h
                else:
                    groups.append((name, h))
        for name, h in groups:
            for member in members(name):
                where.setdefault(member, h)
        for name, h in where.items():
            if name in LOOPBACK_ONLY and not h.loopback:
                raise HostsFileError(f"{self.path}: {name} has no login of its own and may only run on a loopback "
                                     f"address, not on host {h.name} ({h.address})")
            if not h.loopback and not (self.tls or self.allow_plaintext):
                raise HostsFileError(
                    f"{self.path}: host {h.name} ({h.address}) is reachable from other machines: say `tls = true` "
                    "at the top of the file (Kafka, Redis and Spark encrypted with the stack's CA), or "
                    "`allow_plaintext = true` on a private network you trust (logins, but traffic in clear)")
        return where


def _is_group_name(name: str) -> bool:
    return name in ("kafka", "redis", "spark", "airflow", "monitoring", "logging", "all")


def read(path: str | Path) -> Hosts:
    """Parse and check a hosts file (syntax, names, addresses); placement is checked against a configuration
    (:meth:`Hosts.place`)."""
    path = Path(path).absolute()
    try:
        doc = tomllib.loads(path.read_text())
    except OSError as e:
        raise HostsFileError(f"{HOSTS_FILE_ENV}={path}: cannot read it ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise HostsFileError(f"{path} is not valid TOML: {e}") from None
    unknown = set(doc) - {"stack", "hosts", "allow_plaintext", "tls"}
    if unknown:
        raise HostsFileError(f"{path}: unknown section(s) {', '.join(sorted(unknown))} "
                             "(stack, hosts, allow_plaintext, tls)")
    flags = {}
    for flag in ("allow_plaintext", "tls"):
        flags[flag] = doc.get(flag, False)
        if not isinstance(flags[flag], bool):
            raise HostsFileError(f"{path}: {flag} must be true or false")
    stack = doc.get("stack", {})
    if not isinstance(stack, dict):
        raise HostsFileError(f"{path}: [stack] must be a table of settings")
    raw_hosts = doc.get("hosts")
    if not isinstance(raw_hosts, dict) or not raw_hosts:
        raise HostsFileError(f"{path}: no [hosts.<name>] table: name at least one host, its address and services")
    hosts = []
    addresses: dict[str, str] = {}
    for name, body in raw_hosts.items():
        if not _NAME.match(name):
            raise HostsFileError(f"{path}: host name {name!r}: letters, digits, '.', '_' and '-' only")
        if not isinstance(body, dict) or set(body) - {"address", "services"}:
            raise HostsFileError(f"{path}: [hosts.{name}] takes address and services, nothing else")
        address, services = body.get("address"), body.get("services", [])
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise HostsFileError(f"{path}: [hosts.{name}] needs an address (an IP address or a host name), "
                                 f"not {address!r}")
        if address in addresses:
            raise HostsFileError(f"{path}: hosts {addresses[address]} and {name} have the same address {address}")
        addresses[address] = name
        if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
            raise HostsFileError(f"{path}: [hosts.{name}] services must be a list of service names")
        hosts.append(Host(name, address, tuple(services)))
    return Hosts(path, tuple(hosts), tuple(sorted(stack.items())), **flags)
