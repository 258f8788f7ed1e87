"""Executor hot standby: one leader by a Redis lease with a fencing token; the journal replicated to Redis and
acknowledged by a replica before the leader acts on a decision.

Two or more ``hft execute run --ha`` processes (on one machine or several) share the stack's Redis:

* **Lease.** ``{p}:exec:leader`` holds ``<epoch>:<instance>`` (the *token*) for ``--lease-ms`` (default
  :data:`LEASE_MS`); it is taken only when nobody holds it, each time with a new epoch (``INCR {p}:exec:epoch``),
  and renewed by every read of the predictions. A leader that stops renewing (killed, paused, cut off) loses it
  once it expires; a standby then takes it.
* **Fencing.** Everything a leader does to shared state checks the token atomically in Redis: reading
  predictions (a script around ``XREADGROUP``, which also renews the lease), appending to the replicated journal
  (a script), publishing orders, fills and positions (a transaction that ``WATCH``\\ es the lease), and Kafka
  ``orders`` (a transactional producer whose ``transactional.id`` is the role's: the new leader's producer fences
  the old one's, whose open transaction is aborted). An instance whose token is gone raises :class:`Fenced` at the
  first of them: it has decided, journaled and sent nothing since, and steps down to standby.
* **Replicated journal.** Each batch's events go to the stream ``{p}:exec:journal`` (a script that also checks the
  record count, so no record is written twice or skipped, and a retried append is recognised) and are
  acknowledged by a replica (``WAIT``, Redis behind Sentinels) before the leader writes them to its own journal,
  publishes them or acknowledges the predictions that caused them.
* **Standby.** Tails the replicated journal into its own journal folder (it is hot: nothing to fetch at takeover
  but the last batches), tries the lease every ``lease/4``, and once it holds it: copies the rest, recovers the
  executor from that journal (positions, cash, working orders: exactly the leader's), republishes the records
  past the publication cursor, reads first the predictions the old leader read and did not acknowledge (the
  consumer name is the role's, shared), and goes on.

The instrument table (ids of tickers, :class:`~hft.execution.journal.Journal`) is replicated too
(``{p}:exec:instruments``), so every instance gives a ticker the same id.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import time
from typing import Any

import numpy as np

from hft.errors import HftError
from hft.execution.journal import Journal, JournalError
from hft.redis_conn import wait_replicated
from hft.schemas import RedisKeys

log = logging.getLogger(__name__)

#: The lease's time to live (ms): a standby takes over at most about this long after the leader's last renewal.
LEASE_MS = 2000
#: Records per chunk when a local journal seeds an empty replicated one, and per page when a standby copies.
PAGE = 500


class Fenced(HftError, RuntimeError):
    """This instance no longer holds the executor's lease: it must not decide, journal or send anything."""


_ACQUIRE = """
-- KEYS: the lease, the epoch counter. ARGV: instance, ttl_ms. Returns the new epoch, or nil when held.
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], epoch .. ':' .. ARGV[1], 'PX', ARGV[2])
return epoch
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

_FENCE = """
local holder = redis.call('GET', KEYS[1])
if holder ~= ARGV[1] then return redis.error_reply('FENCED the lease is held by ' .. tostring(holder)) end
"""

_READ = _FENCE + """
-- KEYS: the lease, the predictions stream. ARGV: token, ttl_ms, group, consumer, count, id
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('XREADGROUP', 'GROUP', ARGV[3], ARGV[4], 'COUNT', ARGV[5], 'STREAMS', KEYS[2], ARGV[6])
"""

_APPEND = _FENCE + """
-- KEYS: the lease, the journal stream, its record count. ARGV: token, first, n, data
local count = tonumber(redis.call('GET', KEYS[3]) or '0')
local first, n = tonumber(ARGV[2]), tonumber(ARGV[3])
if count == first + n then  -- the retry of an append that was done (its reply was lost)
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)[1]
  if last and last[2][2] == ARGV[2] then return count end
end
if count ~= first then
  return redis.error_reply('JOURNAL the replicated journal holds ' .. count .. ' records; this append starts at ' .. first)
end
redis.call('XADD', KEYS[2], '*', 'first', ARGV[2], 'n', ARGV[3], 'data', ARGV[4])
redis.call('SET', KEYS[3], count + n)
return count + n
"""

_SET = _FENCE + """
-- KEYS: the lease, a key. ARGV: token, value
return redis.call('SET', KEYS[2], ARGV[2])
"""


def default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _fenced(exc: Exception) -> Exception:
    """A script's FENCED error as :class:`Fenced`; anything else unchanged."""
    msg = str(exc)
    if msg.startswith("FENCED"):
        return Fenced(msg[len("FENCED "):])
    if msg.startswith("JOURNAL"):
        return JournalError(msg[len("JOURNAL "):])
    return exc


class Lease:
    """The executor's leadership (module docstring). ``token`` is set while this instance believes it leads."""

    def __init__(self, client, prefix: str = "hft", instance: str | None = None, ttl_ms: int = LEASE_MS,
                 replicas_to_ack: int = 0, shard: str = ""):
        """``shard``: the lease of one shard of the tickers (:mod:`hft.execution.shards`), its journal keys too."""
        if ttl_ms < 100:
            raise ValueError(f"the lease must last at least 100 ms, got {ttl_ms}")
        self.r = client
        self.keys = RedisKeys(prefix, shard)
        self.instance = instance or default_instance()
        self.ttl_ms = int(ttl_ms)
        self.replicas_to_ack = replicas_to_ack
        self.token: str | None = None
        self.epoch = 0
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)

    def holder(self) -> str | None:
        return self.r.get(self.keys.exec_leader)

    def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (a new epoch); True when this instance now leads."""
        epoch = self._acquire(keys=[self.keys.exec_leader, self.keys.exec_epoch], args=[self.instance, self.ttl_ms])
        if epoch is None:
            return False
        self.epoch = int(epoch)
        self.token = f"{self.epoch}:{self.instance}"
        # a failover right after must not hand the lease (and this epoch) to nobody
        wait_replicated(self.r, self.replicas_to_ack, self.ttl_ms // 2, f"the lease of epoch {self.epoch}", tries=1)
        log.warning("executor %s leads (epoch %d)", self.instance, self.epoch)
        return True

    def renew(self) -> bool:
        """Extend the lease while this instance holds it (reads renew it too); False when it is no longer ours."""
        return self.token is not None and bool(self._renew(keys=[self.keys.exec_leader], args=[self.token, self.ttl_ms]))

    def release(self) -> None:
        """Give the lease up if this instance still holds it (a clean stop, or a step down)."""
        token, self.token = self.token, None
        if token is not None:
            try:
                self._release(keys=[self.keys.exec_leader], args=[token])
            except Exception as exc:  # noqa: BLE001 - it expires by itself
                log.warning("could not release the lease (it expires in %d ms): %s", self.ttl_ms, exc)


class ReplicatedJournal:
    """The journal in Redis, written only by the lease holder (module docstring); also the fence of the
    executor's other writes (:meth:`read`, :meth:`transaction`)."""

    def __init__(self, client, lease: Lease, ack_timeout_ms: int = 2000):
        self.r = client
        self.lease = lease
        self.keys = lease.keys
        self.replicas_to_ack = lease.replicas_to_ack  # the lease's: both must survive a failover
        self.ack_timeout_ms = ack_timeout_ms
        self._read = client.register_script(_READ)
        self._append = client.register_script(_APPEND)
        self._set = client.register_script(_SET)
        self._last_id = "0-0"  # the newest journal stream entry copied into the local journal

    @property
    def token(self) -> str:
        if self.lease.token is None:
            raise Fenced(f"{self.lease.instance} does not hold the lease")
        return self.lease.token

    def records(self) -> int:
        return int(self.r.get(self.keys.exec_journal_records) or 0)

    def _call(self, script, keys, args):
        import redis

        try:
            return script(keys=keys, args=args)
        except redis.ResponseError as exc:
            raise _fenced(exc) from None

    # -- the leader's writes -------------------------------------------------------------------------------
    def append(self, first: int, events: np.ndarray) -> None:
        """Replicate ``events`` (journal records ``first``...) before they are acted on: raises :class:`Fenced`
        when the lease is not ours, :class:`JournalError` when the replicated journal does not end at ``first``,
        NotReplicatedError when no replica acknowledged them."""
        if not len(events):
            return
        data = base64.b64encode(np.ascontiguousarray(events).tobytes()).decode()
        self._call(self._append, [self.keys.exec_leader, self.keys.exec_journal, self.keys.exec_journal_records],
                   [self.token, first, len(events), data])
        wait_replicated(self.r, self.replicas_to_ack, self.ack_timeout_ms, f"journal records {first}-{first + len(events) - 1}")

    def publish_instruments(self, tickers: list[str]) -> None:
        self._call(self._set, [self.keys.exec_leader, self.keys.exec_instruments], [self.token, json.dumps(tickers)])

    def read(self, group: str, consumer: str, stream: str, count: int, pending: bool) -> list:
        """A fenced ``XREADGROUP`` (``0``: this consumer's pending entries, else new ones) that renews the lease;
        entries as redis-py's ``xreadgroup`` gives them: ``[(id, {field: value}), ...]``."""
        reply = self._call(self._read, [self.keys.exec_leader, stream],
                           [self.token, self.lease.ttl_ms, group, consumer, count, "0" if pending else ">"])
        if not reply:
            return []
        entries = []
        for entry_id, flat in reply[0][1]:
            entries.append((entry_id, dict(zip(flat[::2], flat[1::2])) if flat else {}))
        return entries

    def transaction(self, tries: int = 3):
        """A MULTI pipeline that executes only while the lease is ours (``WATCH``); run it with :meth:`execute`.

        A connection that breaks after the ``WATCH`` (a Redis failover) is one redis-py reports as a WatchError;
        nothing was written yet, so the check is made again on a fresh connection, ``tries`` times in all, then
        it is the ConnectionError it is (before, it escaped as a WatchError and killed the executor: the game day
        lost its standby that way)."""
        import redis

        for attempt in range(tries):
            pipe = self.r.pipeline(transaction=True)
            try:
                pipe.watch(self.keys.exec_leader)
                holder = pipe.get(self.keys.exec_leader)
            except redis.WatchError as exc:
                pipe.reset()
                if attempt + 1 == tries:
                    raise redis.ConnectionError(f"checking the lease: {exc}") from exc
                continue
            if holder != self.token:
                pipe.reset()
                raise Fenced(f"the lease is held by {holder}")
            pipe.multi()
            return pipe
        raise AssertionError("unreachable")

    def execute(self, pipe) -> None:
        """Run a :meth:`transaction`: :class:`Fenced` when the lease changed meanwhile; a ConnectionError when the
        connection broke (whether the transaction ran is unknown: the caller gives the lease up, and whoever leads
        next republishes from the journal)."""
        import redis

        try:
            pipe.execute()
        except redis.WatchError as exc:
            if "changed" in str(exc):  # redis-py: "Watched variable changed."
                raise Fenced("the lease changed hands during the publication") from None
            raise redis.ConnectionError(f"publishing: {exc}") from exc

    # -- the standby's copy --------------------------------------------------------------------------------
    def pull(self, journal: Journal, block_ms: int = 0) -> int:
        """Copy into ``journal`` (and its instrument table) the replicated records it lacks, waiting up to
        ``block_ms`` for new ones; returns how many were copied."""
        table = self.r.get(self.keys.exec_instruments)
        if table:
            journal.adopt_instruments(json.loads(table))
        copied = 0
        block: int | None = block_ms or None
        while True:
            reply = self.r.xread({self.keys.exec_journal: self._last_id}, count=PAGE, block=block)
            chunks = reply[0][1] if reply else []
            for entry_id, fields in chunks:
                first, n = int(fields["first"]), int(fields["n"])
                have = journal.records
                if first > have:
                    raise JournalError(f"the replicated journal starts a chunk at record {first} but {journal.path} "
                                       f"holds {have}: records {have}-{first - 1} are missing")
                if first + n > have:
                    events = np.frombuffer(base64.b64decode(fields["data"]), dtype=journal.dtype)
                    journal.append(events[have - first:])
                    copied += first + n - have
                self._last_id = entry_id
            if len(chunks) < PAGE:
                return copied
            block = None

    def sync(self, journal: Journal) -> None:
        """At takeover: the local journal equals the replicated one (copy what it lacks; a replicated journal that
        is still empty is seeded from the local one, which is how a single executor becomes a pair)."""
        self.pull(journal)
        held = self.records()
        if held == journal.records:
            return
        if held:
            raise JournalError(f"{journal.path} holds {journal.records} records but the replicated journal only {held}: "
                               "it is another executor's history (use an empty --journal folder for this instance)")
        log.warning("seeding the replicated journal with the %d records of %s", journal.records, journal.path)
        for start in range(0, journal.records, PAGE):
            self.append(start, journal.read(start)[:PAGE])


class HotStandby:
    """One ``hft execute run --ha`` instance: standby (copying the replicated journal into ``journal_dir``)
    until it holds the lease, then leader through ``make_service()`` (an ExecutionService built with this
    ``replica`` as its fence, and a fresh transactional Kafka sink), until it stops (idle) or loses the lease
    (standby again). :attr:`service` is the last service it led with."""

    def __init__(self, lease: Lease, replica: ReplicatedJournal, journal_dir, make_service):
        self.lease = lease
        self.replica = replica
        self.journal_dir = journal_dir
        self.make_service = make_service
        self.service: Any = None
        self.leaderships = 0

    def _stand_by(self) -> None:
        """Copy the leader's journal until the lease is ours, then the rest of it."""
        import redis

        from hft.observability.metrics import EXEC_LEADER
        from hft.redis_conn import NotReplicatedError

        EXEC_LEADER.set(0)
        mirror = Journal(self.journal_dir)
        try:
            while True:
                try:
                    if self.lease.try_acquire():
                        self.replica.pull(mirror)
                        return
                    self.replica.pull(mirror, block_ms=max(self.lease.ttl_ms // 4, 10))
                except (redis.ConnectionError, redis.TimeoutError, NotReplicatedError) as exc:
                    # Redis unavailable, or (right after a failover, replicas still attaching to the new master) a
                    # lease only the master holds, which could be lost with it: a lease taken is given back (no-op
                    # when none was), and taken again later
                    log.warning("standby %s: %s; giving the lease back and retrying", self.lease.instance, exc)
                    self.lease.release()
                    time.sleep(0.5)
        finally:
            mirror.close()

    def run(self, stop_when_idle_s: float | None = None):
        """Stand by, lead, and again after losing the lease; returns the totals once a leadership ends idle."""
        import redis

        from hft.observability.metrics import EXEC_EPOCH, EXEC_LEADER
        from hft.redis_conn import NotReplicatedError
        from hft.streaming.kafka_io import DeliveryError

        while True:
            self._stand_by()
            self.leaderships += 1
            EXEC_LEADER.set(1)
            EXEC_EPOCH.set(self.lease.epoch)
            self.service = None
            try:
                self.service = service = self.make_service()
                totals = service.run(stop_when_idle_s=stop_when_idle_s)
                self.lease.release()
                return totals
            except Fenced as exc:
                log.warning("executor %s fenced (epoch %d): %s; standing by", self.lease.instance, self.lease.epoch, exc)
                self.lease.token = None
            except (redis.ConnectionError, redis.TimeoutError, NotReplicatedError, DeliveryError) as exc:
                log.warning("executor %s gives up the lease after: %s; standing by", self.lease.instance, exc)
                self.lease.release()
                time.sleep(0.5)
            except BaseException:
                self.lease.release()
                raise
            finally:
                EXEC_LEADER.set(0)
                if self.service is not None:
                    self.service.close()
