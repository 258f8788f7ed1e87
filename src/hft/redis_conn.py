"""The one way every client (the stream, the executor, the CLI, the alert webhook) reaches Redis.

Two kinds of URL:

* ``redis://host:port/db``: one Redis server, as redis-py takes it.
* ``redis+sentinel://host:port,host:port,.../<master name>/<db>``: a master with replicas watched by Redis
  Sentinels (``hft stack up --redis-replicas 2``). The client asks the Sentinels where the master is, and after a
  failover (the master died: the Sentinels promote a replica) it reconnects to the new master by itself,
  retrying a command for up to :data:`FAILOVER_RETRY_S` seconds, so a failover costs a pause, not an error.
  Writes that must survive a failover wait until a replica holds them (:func:`replicas_to_ack`).

Either kind may name an ACL user, ``redis://hft@host:port/0``: the stack's Redis nodes and Sentinels have no
anonymous (``default``) user, only :data:`USER` with a password. The password never travels in the URL (which
goes on command lines and into logs): it is ``HFT_REDIS_PASSWORD`` when set, else read from the file the URL's
``password_file`` parameter names (the stack's URLs name ``$HFT_HOME/secrets/redis-password``, mode 0600), so
a URL can be passed around and logged and a process that cannot read the file cannot log in.

TLS: ``rediss://`` and ``rediss+sentinel://`` (the stack's URLs when its hosts file says ``tls = true``) connect
over TLS to the nodes and the Sentinels alike, checking each server's certificate and address against the
deployment's CA (:func:`hft.tls.ca_pem`), or against the file a ``ssl_ca_certs`` parameter of the URL names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

from hft.errors import HftError

SENTINEL_SCHEME = "redis+sentinel"
#: The same over TLS (``rediss://`` for one node, as redis-py spells it).
SENTINEL_TLS_SCHEME = "rediss+sentinel"
#: The name the Sentinels know the stack's master by.
MASTER_NAME = "hft"
#: About how long a command keeps retrying while the Sentinels elect a new master (down-after 1 s, election
#: and promotion 1-3 s on loopback).
FAILOVER_RETRY_S = 20.0
#: The stack's Redis user (ACL: every command, key and channel); its password, when set, comes from here.
USER = "hft"
PASSWORD_ENV = "HFT_REDIS_PASSWORD"


class RedisUrlError(HftError, ValueError):
    """A Redis URL that cannot be used; the message says why."""


class NotReplicatedError(HftError, RuntimeError):
    """A write that no replica acknowledged in time (Redis behind Sentinels): not safe from a failover."""


def wait_replicated(client, replicas: int, timeout_ms: int, what: str, tries: int = 3) -> None:
    """Return once ``replicas`` replicas hold everything ``client`` wrote so far (``WAIT``, up to ``tries`` x
    ``timeout_ms``), else raise :class:`NotReplicatedError` naming ``what``. 0 replicas: returns at once."""
    if replicas <= 0:
        return
    acked = 0
    for _ in range(tries):
        acked = int(client.wait(replicas, timeout_ms))
        if acked >= replicas:
            return
    raise NotReplicatedError(f"{what}: {acked} of {replicas} replica(s) acknowledged it within {tries} x {timeout_ms} ms")


@dataclass(frozen=True)
class Credentials:
    """Who a client logs in as: ``username`` None is the anonymous ``default`` user (a Redis without ACL)."""

    username: str | None = None
    password: str | None = None

    def kwargs(self) -> dict[str, str]:
        """``username``/``password`` as redis-py's clients take them (nothing for the anonymous user)."""
        return {"username": self.username, "password": self.password or ""} if self.username else {}

    def __repr__(self) -> str:  # never the password
        return f"Credentials(username={self.username!r}, password={'***' if self.password else None})"


def credentials(url: str) -> Credentials:
    """The user ``url`` names and its password (module docstring): the URL's own (``user:pw@``, not advised),
    else ``HFT_REDIS_PASSWORD``, else the ``password_file``'s first line. A named user without a password
    found raises :class:`RedisUrlError` saying how to give one."""
    parts = urlsplit(url)
    if not parts.username:
        return Credentials()
    user = unquote(parts.username)
    if parts.password is not None:
        return Credentials(user, unquote(parts.password))
    password = os.environ.get(PASSWORD_ENV)
    files = parse_qs(parts.query).get("password_file")
    if not password and files:
        try:
            password = Path(files[0]).read_text().strip()
        except OSError as e:
            raise RedisUrlError(f"{redacted(url)}: cannot read the password of Redis user {user!r}: {e}") from None
    if not password:
        raise RedisUrlError(f"{redacted(url)}: Redis user {user!r} needs a password: set {PASSWORD_ENV}, or add "
                            "?password_file=PATH (a file only you can read) to the URL")
    return Credentials(user, password)


def redacted(url: str) -> str:
    """``url`` without a password it may hold (for messages and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"))


def _server_url(url: str) -> str:
    """A ``redis://`` URL as redis-py takes it: without the user (given as arguments), ``password_file`` and
    ``ssl_ca_certs`` (:func:`tls_kwargs` gives it)."""
    parts = urlsplit(url)
    query = urlencode([(k, v) for k, vs in parse_qs(parts.query).items()
                       if k not in ("password_file", "ssl_ca_certs") for v in vs])
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2], query=query))


def is_sentinel(url: str) -> bool:
    """``url`` names a master behind Sentinels (``redis+sentinel://`` or ``rediss+sentinel://``)."""
    return urlsplit(url).scheme in (SENTINEL_SCHEME, SENTINEL_TLS_SCHEME)


def tls_kwargs(url: str) -> dict[str, Any]:
    """redis-py's TLS arguments for ``url``: none for ``redis://``; for ``rediss://`` and ``rediss+sentinel://``
    the server's certificate and address checked against the deployment's CA (or the URL's ``ssl_ca_certs``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("rediss", SENTINEL_TLS_SCHEME):
        return {}
    files = parse_qs(parts.query).get("ssl_ca_certs")
    if files:
        return {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_certs": files[0]}
    from hft.tls import ca_pem

    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True, "ssl_ca_data": ca_pem()}


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int

    def __str__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"{SENTINEL_SCHEME}://{hosts}/{self.master}/{self.db}"


def parse_sentinel_url(url: str) -> SentinelUrl:
    """``redis+sentinel://[user@]h1:p1,h2:p2/<master>/<db>[?password_file=PATH]`` (db optional, 0); the user
    and password: :func:`credentials`."""
    parts = urlsplit(url)
    if not is_sentinel(url):
        raise RedisUrlError(f"{url!r} is not a {SENTINEL_SCHEME}:// (or {SENTINEL_TLS_SCHEME}://) URL")
    sentinels = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise RedisUrlError(f"{url!r}: {item!r} is not host:port")
        sentinels.append((host, int(port)))
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise RedisUrlError(f"{url!r}: the path must be /<master name>[/<db>]")
    return SentinelUrl(tuple(sentinels), path[0], int(path[1]) if len(path) == 2 else 0)


def replicas_to_ack(url: str) -> int:
    """How many replicas must hold a write before it counts as done: 1 behind Sentinels, else 0."""
    return 1 if is_sentinel(url) else 0


def sentinel(url: str, **kwargs: Any):
    """A redis-py ``Sentinel`` for a ``redis+sentinel://`` URL (and the parsed URL), logged in to the Sentinels
    and to the nodes as the URL's user."""
    from redis.sentinel import Sentinel

    parsed = parse_sentinel_url(url)
    login = credentials(url).kwargs()
    tls = tls_kwargs(url)  # the nodes' connections: connect() gives them an SSL connection class
    return Sentinel(list(parsed.sentinels), socket_timeout=2, socket_connect_timeout=2,
                    sentinel_kwargs={"socket_timeout": 2, "socket_connect_timeout": 2, **login, **tls,
                                     **({"ssl": True} if tls else {})},
                    **login, **tls, **kwargs), parsed


def master_address(url: str) -> tuple[str, int]:
    """(host, port) of the Redis that takes writes: the Sentinels' master for a ``redis+sentinel://`` URL (raises
    redis-py's MasterNotFoundError when none is known), else the URL's own."""
    if is_sentinel(url):
        manager, parsed = sentinel(url)
        host, port = manager.discover_master(parsed.master)
        return str(host), int(port)
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def _master_connection_class(tls: bool):
    from redis.exceptions import ConnectionError, ResponseError
    from redis.sentinel import SentinelManagedConnection, SentinelManagedSSLConnection

    base = SentinelManagedSSLConnection if tls else SentinelManagedConnection

    class NoReplicasYet(ConnectionError):
        """``NOREPLICAS``: the master refuses writes until a replica is in sync (``min-replicas-to-write``): just
        after a failover, the other replica is still moving to the new master. Retried like a lost connection."""

    class MasterConnection(base):  # type: ignore[valid-type,misc]
        """Asks the Sentinels for the master on every socket connect. redis-py 8.1 does only in ``connect()``;
        a command's retry reconnects through ``connect_check_health()``, which kept dialling the dead master's
        address for the whole retry budget (seen: an executor's XREADGROUP gave up 23 s after a failover that
        took 3). And a write the new master refuses for want of a replica is retried, not raised (seen: the
        stream's commit script failed with NOREPLICAS a second after the promotion, and the job stopped)."""

        def _connect(self):
            if self.connection_pool.is_master:
                self.host, self.port = self.connection_pool.get_master_address()
            return super()._connect()

        def read_response(self, *args, **kwargs):
            try:
                return super().read_response(*args, **kwargs)
            except ResponseError as e:
                if str(e).startswith("NOREPLICAS"):
                    raise NoReplicasYet(str(e)) from e
                raise

    return MasterConnection


def connect(url: str, decode_responses: bool = True, **kwargs: Any):
    """A redis-py client for ``url`` (either kind, module docstring); ``kwargs`` as ``redis.Redis`` takes them."""
    import redis

    if not is_sentinel(url):
        return redis.Redis.from_url(_server_url(url), decode_responses=decode_responses,
                                    **credentials(url).kwargs(), **tls_kwargs(url), **kwargs)
    from redis.backoff import ExponentialBackoff
    from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError
    from redis.retry import Retry

    manager, parsed = sentinel(url)
    # capped at 1 s between tries: FAILOVER_RETRY_S / 1 s tries, plus the first fast ones
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=int(FAILOVER_RETRY_S) + 5,
                  supported_errors=(ConnectionError, TimeoutError, ReadOnlyError))
    kwargs.setdefault("socket_timeout", 5)
    kwargs.setdefault("socket_connect_timeout", 2)
    return manager.master_for(parsed.master, db=parsed.db, decode_responses=decode_responses, retry=retry,
                              connection_class=_master_connection_class(bool(tls_kwargs(url))), **kwargs)


def cli_login(url: str) -> tuple[list[str], dict[str, str]]:
    """How ``redis-cli`` logs in as ``url``'s user: its arguments (over TLS for ``rediss``) and environment (the
    password in ``REDISCLI_AUTH``, never on the command line, where ``ps`` shows it)."""
    login = credentials(url)
    tls: list[str] = []
    if tls_kwargs(url):
        from hft.tls import ca_file

        tls = ["--tls", "--cacert", tls_kwargs(url).get("ssl_ca_certs") or str(ca_file())]
    if not login.username:
        return tls, {}
    return [*tls, "--user", login.username], {"REDISCLI_AUTH": login.password or ""}
