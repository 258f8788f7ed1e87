"""Load-balanced executors: the tickers in ``S`` shards, each decided by exactly one of several instances at a time.

``hft execute run --shards S`` on any number of machines (one Redis): every instance heartbeats into
``{p}:exec:members`` and holds at most its fair share, ``ceil(S / live instances)``, of the shards' leases
(:class:`hft.execution.leader.Lease`, one per shard, with its fencing token). A shard without a holder is taken
by an instance below its share; an instance above its share (one joined) gives the extra back after its batch.
An instance that dies (kill -9) stops renewing its leases: they expire after ``--lease-ms`` and the survivors,
whose share grew, take them over.

A shard is one executor as before, on its own keys (:class:`hft.schemas.RedisKeys` with ``shard``): its consumer
group of the predictions stream (entries of other shards' tickers are acknowledged unread; a ticker belongs to
``crc32(ticker) % S``), its replicated journal (the new holder copies it and recovers the shard's positions, cash
and working orders exactly, then reads first what the last holder read and did not acknowledge: a ticker's
predictions are decided in order, once), its order ids (``shard * 10**12 + 1`` up) and Kafka transactional id.

Risk that spans tickers, across instances: each shard's gross exposure is limited to ``max_gross_notional / S``
(so the sum over shards never exceeds the limit, whoever holds them), and the day's loss limit is shared: a shard
halts for the day once its own loss reaches the limit less what the other shards lost that day
(``{p}:exec:risk``, published with every batch). The kill switch halts every shard; each release resumes each once.
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Order ids of shard ``k`` start at ``k * ID_SPACE + 1``.
ID_SPACE = 10**12
#: Most shards (each a lease, a consumer group and a journal in Redis).
MAX_SHARDS = 256


def shard_of(ticker: str, count: int) -> int:
    """The shard (0-based) of ``ticker`` among ``count``: stable across processes, machines and restarts."""
    return zlib.crc32(ticker.strip().upper().encode()) % count


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count}: shards are 1 to {MAX_SHARDS}, index below count")

    @property
    def name(self) -> str:
        return f"{self.index + 1}-of-{self.count}"

    def owns(self, ticker: str) -> bool:
        return shard_of(ticker, self.count) == self.index

    def decides(self, ticker: Any) -> bool:
        """This shard decides (or refuses) a stream entry with this ``ticker`` field: its own tickers; an entry
        without a usable ticker goes to shard 0 alone (refused there once, not once per shard)."""
        if not isinstance(ticker, str) or not ticker.strip():
            return self.index == 0
        return self.owns(ticker)

    def others(self) -> list[str]:
        return [Shard(k, self.count).name for k in range(self.count) if k != self.index]

    def core(self, config):
        """``config`` (an ExecConfig) as this shard's ``hft_exec.ExecutorConfig``: its id space, its share of the
        gross limit."""
        core = config.to_core()
        core.first_order_id = self.index * ID_SPACE + 1
        risk = core.risk
        risk.max_gross_notional = config.max_gross_notional / self.count
        core.risk = risk
        return core


class ShardedExecutor:
    """One ``hft execute run --shards S`` instance (module docstring). ``make_service(shard, replica)`` builds the
    ExecutionService of a shard it just took (fenced by ``replica``)."""

    def __init__(self, client, shards: int, instance: str, journal_root: str | Path, make_service,
                 ttl_ms: int, replicas_to_ack: int = 0, prefix: str = "hft"):
        from hft.schemas import RedisKeys

        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"--shards {shards}: pick 1 to {MAX_SHARDS}")
        self.r = client
        self.count = shards
        self.instance = instance
        self.journal_root = Path(journal_root)
        self.make_service = make_service
        self.ttl_ms = ttl_ms
        self.replicas_to_ack = replicas_to_ack
        self.prefix = prefix
        self.keys = RedisKeys(prefix)
        self.owned: dict[int, tuple[Any, Any]] = {}  # shard index -> (lease, service)
        self.taken = 0  # shards taken over in this process's life

    # -- membership ---------------------------------------------------------------------------------------
    def heartbeat(self) -> int:
        """Announce this instance; returns the live instances (heartbeats within a lease's time)."""
        now = int(time.time() * 1000)
        pipe = self.r.pipeline(transaction=True)
        pipe.zadd(self.keys.exec_members, {self.instance: now})
        pipe.zremrangebyscore(self.keys.exec_members, "-inf", now - self.ttl_ms)
        pipe.zcard(self.keys.exec_members)
        return max(int(pipe.execute()[-1]), 1)

    def share(self, live: int) -> int:
        return math.ceil(self.count / live)

    # -- shards -------------------------------------------------------------------------------------------
    def _take(self, k: int) -> bool:
        from hft.execution.leader import Lease, ReplicatedJournal

        shard = Shard(k, self.count)
        lease = Lease(self.r, self.prefix, instance=self.instance, ttl_ms=self.ttl_ms,
                      replicas_to_ack=self.replicas_to_ack, shard=shard.name)
        if not lease.try_acquire():
            return False
        try:
            service = self.make_service(shard, ReplicatedJournal(self.r, lease), self.journal_root / f"shard-{shard.name}")
        except BaseException:
            lease.release()
            raise
        self.owned[k] = (lease, service)
        self.taken += 1
        log.warning("executor %s took shard %s (epoch %d): %d ticker(s)", self.instance, shard.name, lease.epoch,
                    len(service.tickers))
        return True

    def _drop(self, k: int, release: bool) -> None:
        lease, service = self.owned.pop(k)
        try:
            service.close()
        finally:
            if release:
                lease.release()
            else:
                lease.token = None

    def keep_alive(self) -> int:
        """Heartbeat and renew every owned lease (a takeover may take longer than a lease: the others must not
        look lost meanwhile); drops a shard whose lease is gone. Returns the live instances."""
        for k in list(self.owned):
            if not self.owned[k][0].renew():
                log.warning("executor %s lost shard %s (its lease expired)", self.instance, Shard(k, self.count).name)
                self._drop(k, release=False)
        return self.heartbeat()

    def balance(self) -> None:
        """Take free shards up to this instance's share; give back what is above it."""
        share = self.share(self.keep_alive())
        while len(self.owned) > share:
            k = max(self.owned)
            log.warning("executor %s gives shard %s back (share %d)", self.instance, Shard(k, self.count).name, share)
            self._drop(k, release=True)
        for k in range(self.count):  # a held lease is not taken (try_acquire): only free shards
            if len(self.owned) >= share:
                break
            if k not in self.owned and self._take(k):
                share = self.share(self.keep_alive())

    def run(self, stop_when_idle_s: float | None = None):
        """Balance, then one batch of each owned shard, until idle for ``stop_when_idle_s`` (None: forever) while
        holding its share; returns the totals of this process's batches."""
        from collections import Counter

        import redis

        from hft.execution.leader import Fenced
        from hft.redis_conn import NotReplicatedError

        totals: Counter = Counter()
        idle_since = time.monotonic()
        last_balance = 0.0
        try:
            while True:
                now = time.monotonic()
                if now - last_balance >= self.ttl_ms / 4000:
                    self.balance()
                    last_balance = now
                busy = False
                live = self.heartbeat()
                for k in sorted(self.owned):
                    _, service = self.owned[k]
                    try:
                        result = service.step()
                    except Fenced as exc:
                        log.warning("executor %s lost shard %s: %s", self.instance, Shard(k, self.count).name, exc)
                        self._drop(k, release=False)
                        continue
                    except (redis.ConnectionError, redis.TimeoutError, NotReplicatedError) as exc:
                        log.warning("executor %s gives shard %s up after: %s", self.instance,
                                    Shard(k, self.count).name, exc)
                        self._drop(k, release=True)
                        continue
                    if result.entries:
                        busy = True
                        totals.update(entries=result.entries, orders=result.orders, fills=result.fills)
                if busy:
                    idle_since = time.monotonic()
                elif not self.owned:
                    time.sleep(min(self.ttl_ms / 4000, 0.2))
                if (stop_when_idle_s is not None and time.monotonic() - idle_since >= stop_when_idle_s
                        and len(self.owned) >= self.share(live)):
                    return totals
        finally:
            for k in list(self.owned):
                self._drop(k, release=True)
            self.r.zrem(self.keys.exec_members, self.instance)
