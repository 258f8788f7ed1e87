"""Executor hot standby against a real redis-server: the lease, the fencing of every write, the replicated journal
(exact state at takeover), in one process. The kill -9 and SIGSTOP scenarios with real processes are in
tests/failover/test_executor_standby.py."""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_service import TICKERS, order_records, predictions, write

import hft_exec
from exec_fixtures import LOOSE
from hft.execution.config import ExecConfig
from hft.execution.journal import Journal, JournalError
from hft.execution.leader import Fenced, HotStandby, Lease, ReplicatedJournal
from hft.execution.service import GROUP, ExecutionService
from polling import until

TTL = 150  # ms


def instance(client, name: str, ttl_ms: int = TTL) -> ReplicatedJournal:
    return ReplicatedJournal(client, Lease(client, instance=name, ttl_ms=ttl_ms))


def lead(client, fence: ReplicatedJournal, folder, tickers=TICKERS, **overrides) -> ExecutionService:
    assert fence.lease.try_acquire()
    return ExecutionService(client, folder, tickers, ExecConfig(**{**LOOSE, **overrides}), block_ms=10, fence=fence)


def lose_lease(fence: ReplicatedJournal) -> None:
    """The leader stops renewing (paused, cut off): its lease expires."""
    time.sleep(fence.lease.ttl_ms / 1000 + 0.05)
    assert fence.lease.holder() is None


def test_one_leader_at_a_time_and_each_leadership_a_new_epoch(client):
    a, b = Lease(client, instance="a", ttl_ms=TTL), Lease(client, instance="b", ttl_ms=TTL)
    assert a.try_acquire() and a.token == f"{a.epoch}:a"
    assert not b.try_acquire(), "two leaders"
    assert client.pttl("hft:exec:leader") <= TTL
    time.sleep(TTL / 1000 + 0.05)
    assert b.try_acquire() and b.epoch == a.epoch + 1
    a.release()  # no longer a's: releasing it must not free b's lease
    assert b.holder() == b.token
    b.release()
    assert b.holder() is None and b.token is None
    with pytest.raises(ValueError, match="at least 100 ms"):
        Lease(client, ttl_ms=10)


def test_an_instance_that_lost_its_lease_reads_journals_and_publishes_nothing(client, tmp_path):
    write(client, predictions(20))
    fa = instance(client, "a")
    a = lead(client, fa, tmp_path / "a")
    assert a.step().entries > 0 and fa.records() > 0
    lose_lease(fa)
    fb = instance(client, "b")
    b = lead(client, fb, tmp_path / "b")
    write(client, predictions(10, start_ms=2_000_000_000_000), batch_id=1)
    before = (fa.records(), client.xlen("hft:orders"), client.get("hft:exec:published"),
              client.xinfo_groups("hft:predictions")[0]["last-delivered-id"])

    with pytest.raises(Fenced, match=f"held by {fb.lease.token}"):
        a.step()  # its read is fenced: it takes no prediction from the group
    events = a.journal.read()[-3:]
    with pytest.raises(Fenced):  # nor can it replicate a decision ...
        fa.append(fa.records(), events)
    with pytest.raises(Fenced):  # ... or publish
        fa.transaction()
    pipe = fb.transaction()  # and a publication whose lease changes hands before it executes does not happen
    pipe.set("hft:exec:published", -1)
    client.set("hft:exec:leader", "999:intruder")
    with pytest.raises(Fenced, match="changed hands"):
        fb.execute(pipe)
    assert (fa.records(), client.xlen("hft:orders"), client.get("hft:exec:published"),
            client.xinfo_groups("hft:predictions")[0]["last-delivered-id"]) == before
    assert a.journal.records == fa.records(), "the fenced leader journaled locally"
    a.close()
    b.close()


def test_a_standby_takes_over_with_exactly_the_leaders_positions_cash_and_working_orders(client, tmp_path):
    """Partial fills keep orders working across the takeover; after it, the pair decides like one executor."""
    preds = predictions(120)
    write(client, preds[:150])
    tight = dict(max_fill_qty=2)
    fa = instance(client, "a")
    a = lead(client, fa, tmp_path / "a", **tight)
    a.step()
    fb = instance(client, "b")
    mirror = Journal(tmp_path / "b")
    standby = fb.pull(mirror)  # hot: the standby copies what the leader replicated, as it goes
    assert standby == a.journal.records and not fb.lease.try_acquire()
    mirror.close()
    a.step()
    assert sum(a.executor.open_orders(i) for i in range(len(TICKERS))) > 0, "no order is working at the takeover"
    lose_lease(fa)
    b = lead(client, fb, tmp_path / "b", **tight)
    assert b.journal.records == a.journal.records
    assert np.array_equal(b.journal.read(), a.journal.read())
    for i in range(len(TICKERS)):
        assert (b.executor.position(i), b.executor.working(i), b.executor.open_orders(i)) == \
               (a.executor.position(i), a.executor.working(i), a.executor.open_orders(i))
    assert (b.executor.cash, b.executor.equity, b.executor.next_order_id) == \
           (a.executor.cash, a.executor.equity, a.executor.next_order_id)
    a.close()
    write(client, preds[150:], batch_id=1)
    b.run(stop_when_idle_s=0.05)
    records = order_records(client)
    assert {int(r["epoch"]) for r in records} == {fa.lease.epoch, fb.lease.epoch}
    assert sorted(int(r["seq"]) for r in records) == [int(r["seq"]) for r in records], "a record published twice"

    client.delete("hft:orders", "hft:exec:published")  # the same predictions, one executor, no takeover
    client.xgroup_destroy("hft:predictions", GROUP)
    alone = ExecutionService(client, tmp_path / "alone", TICKERS, ExecConfig(**{**LOOSE, **tight}), block_ms=10)
    alone.run(stop_when_idle_s=0.05)
    for i in range(len(TICKERS)):
        assert b.executor.position(i) == alone.executor.position(i)
    assert b.executor.cash == alone.executor.cash
    assert [int(r["order_id"]) for r in records if r["type"] == "order_sent"] == \
           [int(r["order_id"]) for r in order_records(client) if r["type"] == "order_sent"]
    b.close()
    alone.close()


def test_the_new_leader_decides_what_the_old_one_read_and_did_not_acknowledge(client, tmp_path):
    write(client, predictions(30))
    fa = instance(client, "a")
    a = lead(client, fa, tmp_path / "a")
    taken = fa.read(GROUP, a.consumer, a.stream, 25, pending=False)  # read, then died before deciding
    assert len(taken) == 25 and client.xpending("hft:predictions", GROUP)["pending"] == 25
    lose_lease(fa)
    b = lead(client, instance(client, "b"), tmp_path / "b")
    b.run(stop_when_idle_s=0.05)
    seen = b.journal.read()
    seen = seen[seen["type"] == hft_exec.EventType.prediction_seen]
    assert len(seen) == 60 and client.xpending("hft:predictions", GROUP)["pending"] == 0
    a.close()
    b.close()


def test_the_replicated_journal_refuses_gaps_recognises_a_retried_append_and_seeds_from_a_lone_executor(client, tmp_path):
    write(client, predictions(10))
    lone = ExecutionService(client, tmp_path / "lone", TICKERS, ExecConfig(**LOOSE), block_ms=10)
    lone.run(stop_when_idle_s=0.05)
    history = lone.journal.read()
    lone.close()
    assert len(history) > 4
    # the lone executor's journal becomes the pair's: seeded into Redis at the first leadership
    fa = instance(client, "a")
    a = lead(client, fa, tmp_path / "lone")
    assert fa.records() == len(history)
    chunk = history[:2]
    with pytest.raises(JournalError, match=f"holds {len(history)} records; this append starts at 3"):
        fa.append(3, chunk)
    fa.append(len(history), chunk)
    fa.append(len(history), chunk)  # a retry after a lost reply: recognised, not written twice
    assert fa.records() == len(history) + 2
    # an instance whose own journal is another history is refused, with what to do
    Journal(tmp_path / "other").append(np.concatenate([history, history]))
    lose_lease(fa)
    with pytest.raises(JournalError, match="another executor's history"):
        lead(client, instance(client, "b"), tmp_path / "other")
    a.close()


def test_the_standby_gives_tickers_the_leaders_ids_whatever_its_own_list(client, tmp_path):
    fa = instance(client, "a")
    a = lead(client, fa, tmp_path / "a", tickers=["AAA", "BBB"])
    lose_lease(fa)
    b = lead(client, instance(client, "b"), tmp_path / "b", tickers=["CCC", "BBB"])
    assert b.tickers == ["AAA", "BBB", "CCC"] and a.tickers == ["AAA", "BBB"]
    with pytest.raises(JournalError, match="other ids"):
        Journal(tmp_path / "c").instruments(["BBB"]) and Journal(tmp_path / "c").adopt_instruments(["AAA", "BBB"])
    a.close()
    b.close()


def test_hot_standby_steps_down_when_fenced_and_leads_again_when_the_lease_is_free(client, tmp_path):
    write(client, predictions(10))
    fence = instance(client, "a")
    services = []

    def make_service():
        svc = ExecutionService(client, tmp_path / "a", TICKERS, ExecConfig(**LOOSE), block_ms=10, fence=fence)
        services.append(svc)
        if len(services) == 1:  # the first leadership is cut off: someone else took the lease meanwhile
            client.set("hft:exec:leader", "999:other", px=300)
        return svc

    standby = HotStandby(fence.lease, fence, tmp_path / "a", make_service)
    totals = standby.run(stop_when_idle_s=0.05)
    assert standby.leaderships == 2 and fence.lease.epoch >= 2
    assert totals["entries"] == 20, "the second leadership decided everything"
    assert fence.lease.holder() is None, "an idle stop gives the lease up"


def test_a_standby_whose_lease_no_replica_acknowledges_gives_it_back_and_leads_once_a_replica_attaches(
        client, redis_url, tmp_path, caplog):
    """Right after a Redis failover the replicas are still attaching to the new master: the standby that takes the
    lease then cannot have it replicated. It must give it back and try again (the game day saw it die instead,
    leaving no standby for the next failure), and lead once a replica acknowledges."""
    import shutil
    import subprocess
    import threading

    import redis as redis_lib

    from ports import free_port

    write(client, predictions(10))
    lease = Lease(client, instance="a", ttl_ms=5000, replicas_to_ack=1)  # a lone master: no replica acknowledges
    # a journal append waits up to 3 x 1 s for the replica (its first sync): less than the lease, which must not
    # expire meanwhile (it did under CI's load with a 400 ms lease and 3 x 2 s waits: a second leadership)
    fence = ReplicatedJournal(client, lease, ack_timeout_ms=1000)
    standby = HotStandby(lease, fence, tmp_path / "a", lambda: ExecutionService(
        client, tmp_path / "a", TICKERS, ExecConfig(**LOOSE), block_ms=10, fence=fence))
    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(totals=standby.run(stop_when_idle_s=0.2)), daemon=True)
    replica = None
    try:
        with caplog.at_level("WARNING", logger="hft.execution.leader"):
            runner.start()
            until(lambda: int(client.get("hft:exec:epoch") or 0) >= 3 or not runner.is_alive(), 20, "tries again")
            assert runner.is_alive() and standby.leaderships == 0, "the standby died or led on an unreplicated lease"
            assert "giving the lease back" in caplog.text
            assert client.xlen("hft:orders") == 0

            port = free_port()
            master = redis_lib.Redis.from_url(redis_url).connection_pool.connection_kwargs["port"]
            replica = subprocess.Popen(
                [shutil.which("redis-server"), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path),
                 "--save", "", "--appendonly", "no", "--replicaof", "127.0.0.1", str(master)],
                stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            runner.join(30)
        assert not runner.is_alive(), "the standby never led once a replica attached"
        assert standby.leaderships == 1 and result["totals"]["entries"] == client.xlen("hft:predictions") > 0
        assert fence.records() > 0 and client.xlen("hft:orders") > 0
    finally:
        if replica is not None:
            replica.terminate()
            replica.wait(10)


def test_a_connection_cut_while_the_lease_is_checked_is_retried_and_one_cut_before_exec_is_a_connection_error(
        client, redis_url, monkeypatch):
    """A Redis failover cuts the leader's connection between its WATCH and its EXEC, which redis-py reports as a
    WatchError: it must neither pass for a lost lease nor escape as an unknown error (the game day's standby died
    of one, leaving no executor for the next failure)."""
    import redis as redis_lib

    fence = instance(client, "a", ttl_ms=10_000)
    assert fence.lease.try_acquire()
    admin = redis_lib.Redis.from_url(redis_url)
    real_watch = redis_lib.client.Pipeline.watch
    cuts = {"left": 0}

    def watch_then_cut(pipe, *names):
        done = real_watch(pipe, *names)
        if cuts["left"]:
            cuts["left"] -= 1
            assert admin.client_kill_filter(_type="normal", skipme=True) >= 1  # the server drops the connection
        return done

    monkeypatch.setattr(redis_lib.client.Pipeline, "watch", watch_then_cut)
    try:
        cuts["left"] = 1  # one cut: checked again on a fresh connection, and the write goes through
        pipe = fence.transaction()
        pipe.set("written", "1")
        fence.execute(pipe)
        assert client.get("written") == "1" and cuts["left"] == 0

        cuts["left"] = 3  # cut at every try: a ConnectionError (the caller gives the lease up), not a WatchError
        with pytest.raises(redis_lib.ConnectionError, match="checking the lease"):
            fence.transaction()

        cuts["left"] = 0
        pipe = fence.transaction()
        pipe.set("written", "2")
        admin.client_kill_filter(_type="normal", skipme=True)  # cut before EXEC: unknown outcome, not "fenced"
        with pytest.raises(redis_lib.ConnectionError, match="publishing"):
            fence.execute(pipe)
        assert client.get("written") == "1" and fence.lease.holder() == fence.lease.token

        client.set("hft:exec:leader", "999:other", px=1000)  # a real change of hands is still Fenced
        with pytest.raises(Fenced):
            fence.transaction()
    finally:
        admin.close()
