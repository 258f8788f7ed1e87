"""``hft execute``: the executor service.

Reads the predictions stream (``{p}:predictions``, written by the streaming job) through a Redis consumer
group, decides with the C++ executor (``hft_exec``) against the paper exchange, and for every batch:

1. journals the executor's events (fsync) — the durable record of what was decided and executed; with a hot
   standby (``fence``, :mod:`hft.execution.leader`) first replicated to Redis, fenced by the lease;
2. publishes orders, fills and halts to Kafka ``orders`` (acks=all, keyed by ticker; each record carries its
   journal sequence number ``seq``; with a hot standby in one transaction per batch);
3. in one Redis transaction: appends the same records to ``{p}:orders``, updates ``{p}:positions`` and
   ``{p}:exec:state``, and moves the publication cursor ``{p}:exec:published``;
4. acknowledges the batch's stream entries (XACK).

Crash anywhere and restart: the executor recovers from the journal; entries not acknowledged are delivered
again and are refused as duplicates if their decision was journaled (no order is sent twice), decided
afresh otherwise; journal records past the cursor are published again (no fill is lost), to Kafka only those
after the last record the topic holds (read back at start: no record twice there either).

The stale guard compares a prediction's arrival (the wall clock) with its bar's end. With
``replay_clock`` (historical sessions replayed through the stack, as in the demo) a prediction counts as
arriving at its bar's end: on the wall clock every historical bar would be stale. (Adding the time it
waited in Redis would make arrival times run backwards across a backlog and starve the order-rate bucket.)

Kill switch: ``hft execute halt`` sets ``{p}:exec:halt`` to ``halt``; the service reads it before every
batch, so it takes effect before the next decision: working orders are cancelled and every prediction is
refused (``kill_switch``) until ``hft execute resume``. The halt is journaled and survives restarts.

Several venues (``HFT_EXEC_VENUES``): ``hft execute silence --venue NAME`` adds it to ``{p}:exec:venues:silent``
and the service treats it as a venue that stopped answering from its next batch (no order goes there, its
working orders stay working); ``hft execute answer --venue NAME`` brings it back: what it executed meanwhile is
confirmed, the rest of its working orders cancelled, journaled and published at once (a paper venue's outage
drill; a real venue's adapter reports its own health the same way).
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hft.execution.config import ExecConfig
from hft.execution.journal import Journal
from hft.schemas import RedisKeys, bar_end_ns, correlation_id

log = logging.getLogger(__name__)

DAY_NS = 86_400_000_000_000

ORDERS_TOPIC = "orders"
GROUP = "executor"
#: Entries of the predictions stream that cannot be read (missing or non-numeric fields).
MALFORMED = "malformed_entry"


@dataclass
class StepResult:
    entries: int = 0
    orders: int = 0
    fills: int = 0
    rejected: Tally = field(default_factory=Tally)
    events: int = 0


class ExecutionService:
    def __init__(self, redis_client, journal_dir: str | Path, tickers: list[str], config: ExecConfig | None = None,
                 prefix: str = "hft", consumer: str = "executor-1", kafka=None, batch: int = 1000,
                 block_ms: int = 200, replay_clock: bool = False, fence=None, shard=None):
        """``fence``: a :class:`hft.execution.leader.ReplicatedJournal` when this instance is the leader of a hot
        standby pair (it replicates the journal and fences every write); None for a lone executor. ``shard``: a
        :class:`hft.execution.shards.Shard`: this service decides that shard's tickers only (its own keys,
        consumer group, order ids and share of the gross limit; the day's loss limit shared with the others)."""
        import hft_exec

        self.x = hft_exec
        self.r = redis_client
        self.p = prefix
        self.shard = shard
        self.keys = RedisKeys(prefix, shard.name if shard is not None else "")
        self.group = self.keys.exec_group
        self.stream = self.keys.predictions
        self.consumer = consumer
        self.kafka = kafka
        self.batch = batch
        self.block_ms = block_ms
        self.replay_clock = replay_clock
        self.config = config or ExecConfig.from_env()
        self.venue_names = self.config.venue_names  # by the index events carry (parsed once, not per record)
        self.fence = fence
        self.journal = Journal(journal_dir)
        if fence is not None:
            fence.sync(self.journal)
        self.tickers = self.journal.instruments([t.upper() for t in tickers if shard is None or shard.owns(t)])
        if fence is not None:
            fence.publish_instruments(self.tickers)
        self._last_seen: str | None = None  # the newest predictions entry delivered to the group (fenced reads)
        self.ids = {t: i for i, t in enumerate(self.tickers)}
        core = self.config.to_core() if shard is None else shard.core(self.config)
        self.executor = hft_exec.Executor(core, len(self.tickers))
        self._day = 0  # the UTC day of the newest bar decided (the shards' shared loss limit counts that day)
        self._resumes = int(self.r.hget(self.keys.exec_state, "resumes") or 0)  # kill switch releases applied
        self._cash = np.zeros(len(self.tickers), dtype=np.int64)  # per-ticker cash flow, for PnL per ticker
        history = self.journal.read()
        self.executor.recover(history)
        self._account(history)
        # position per ticker as of the last published record: fill records carry the position after them
        done = history[: self.published()]
        fills = done[done["type"] == self.x.EventType.fill]
        self._published_pos = np.zeros(len(self.tickers), dtype=np.int64)
        np.add.at(self._published_pos, fills["instrument"].astype(np.int64), fills["qty"])
        # order id -> the correlation id of the bar that caused it (fills carry it too): every order of the journal
        # (open ones, and those whose last record is still to be published: the map forgets an order once done)
        sent = history[history["type"] == self.x.EventType.order_sent]
        self._order_cid = {int(e["order_id"]): self._cid(e) for e in sent}
        for e in done[done["type"] == self.x.EventType.order_done]:
            self._order_cid.pop(int(e["order_id"]), None)
        self._expected_px: dict[int, float] = {}  # open order -> the price expected at its decision
        self._pending = True  # first read our own delivered-but-unacknowledged entries
        log.info("executor recovered %d journal records: %d instruments, halted=%s", len(history),
                 len(self.tickers), self.executor.halted)
        try:
            self.r.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except Exception as exc:  # BUSYGROUP: the group exists (restart)
            if "BUSYGROUP" not in str(exc):
                raise
        self._kafka_next = self._kafka_resume()  # the first journal record Kafka `orders` lacks
        self.republish()

    # -- publication -----------------------------------------------------------------------------------------
    def _ticker(self, e) -> str:
        t = int(e["instrument"])
        return self.tickers[t] if t < len(self.tickers) else ""

    def _cid(self, e) -> str:
        """An order_sent event's correlation id: its prediction's bar (``bar_ts_ns``, the bar's end)."""
        return correlation_id(self._ticker(e), int(e["bar_ts_ns"]))

    def _record(self, seq: int, e) -> dict:
        rec = {
            "seq": seq, "type": self.x.EVENT_TYPES[int(e["type"])], "ticker": self._ticker(e),
            "order_id": int(e["order_id"]), "qty": int(e["qty"]), "price": int(e["price"]) / self.x.TICKS_PER_UNIT,
            "fee": int(e["fee"]) / self.x.TICKS_PER_UNIT, "ts_ns": int(e["ts_ns"]),
            "reason": self.x.REASONS[int(e["reason"])],
        }
        order_id = int(e["order_id"])
        if order_id:  # an order's events name its venue (HFT_EXEC_VENUES; "paper": the one exchange)
            v = int(e["venue"])
            rec["venue"] = self.venue_names[v] if v < len(self.venue_names) else str(v)
        if int(e["type"]) == self.x.EventType.order_sent:
            self._order_cid[order_id] = self._cid(e)
        done = int(e["type"]) == self.x.EventType.order_done
        cid = (self._order_cid.pop if done else self._order_cid.get)(order_id, None) if order_id else None
        if cid:
            rec["correlation_id"] = cid
        return rec

    def _account(self, events: np.ndarray) -> None:
        fills = events[events["type"] == self.x.EventType.fill]
        np.add.at(self._cash, fills["instrument"].astype(np.int64), -(fills["qty"] * fills["price"] + fills["fee"]))

    def _kafka_resume(self) -> int:
        """Where Kafka ``orders`` resumes: after its last committed record, when that record is this journal's
        (same type, order, quantity and time at its seq: a crash fell between the Kafka send and the Redis
        publication); else at the publication cursor."""
        start = self.published()
        if self.kafka is None or start >= self.journal.records:  # nothing past the cursor: nothing Kafka could hold
            return start
        from hft.streaming.kafka_io import last_value

        # a shard's own last record (the others write to the same topic): records carry "shard":"<name>"
        mine = None if self.shard is None else json.dumps({"shard": self.shard.name}, separators=(",", ":"))[1:-1]
        raw = last_value(self.kafka.bootstrap, self.kafka.topic, match=None if mine is None else mine.encode())
        try:
            rec: dict = json.loads(raw) if raw is not None else {}
            seq = int(rec["seq"]) if rec else -1
        except (ValueError, KeyError, TypeError, AttributeError):
            return start
        if not start <= seq < self.journal.records or (self.shard is not None and rec.get("shard") != self.shard.name):
            return start
        e = self.journal.read(seq, seq + 1)[0]
        if (self.x.EVENT_TYPES[int(e["type"])], int(e["order_id"]), int(e["qty"]), int(e["ts_ns"])) == \
                (rec.get("type"), rec.get("order_id"), rec.get("qty"), rec.get("ts_ns")):
            log.info("Kafka %s already holds journal records up to %d (the cursor is at %d)", self.kafka.topic, seq, start)
            return seq + 1
        log.warning("the last record of Kafka %s is not this journal's record %d: publishing from the cursor %d",
                    self.kafka.topic, seq, start)
        return start

    def published(self) -> int:
        return int(self.r.get(self.keys.exec_published) or 0)

    def republish(self) -> int:
        """Publish journal records past the cursor (after a crash between journal and publication)."""
        start = self.published()
        if start >= self.journal.records:
            return 0
        events = self.journal.read(start)
        self._publish(start, events)
        log.info("republished %d journal records from %d", len(events), start)
        return len(events)

    def _publish(self, first_seq: int, events: np.ndarray) -> None:
        kind = self.x.EventType
        wanted = np.isin(events["type"], (kind.order_sent, kind.fill, kind.order_done, kind.halt, kind.resume))
        records = []
        for k, e in enumerate(events):
            if not wanted[k]:
                continue
            rec = self._record(first_seq + k, e)
            if rec["type"] == "fill":
                self._published_pos[int(e["instrument"])] += int(e["qty"])
                rec["position"] = int(self._published_pos[int(e["instrument"])])
            records.append(rec)
        if self.fence is not None:  # which leader published it (of which shard: seq and epoch are the shard's)
            for rec in records:
                rec["epoch"] = self.fence.lease.epoch
                if self.shard is not None:
                    rec["shard"] = self.shard.name
        fresh = [r for r in records if r["seq"] >= self._kafka_next]  # Kafka may hold some already (a crash)
        if self.kafka is not None and fresh:
            self.kafka.send((r["ticker"].encode(), json.dumps(r, separators=(",", ":")).encode()) for r in fresh)
        self._kafka_next = max(self._kafka_next, first_seq + len(events))
        pipe = self.r.pipeline(transaction=True) if self.fence is None else self.fence.transaction()
        for rec in records:
            pipe.xadd(self.keys.orders, {k: str(v) for k, v in rec.items()}, maxlen=1_000_000, approximate=True)
        ex = self.executor
        positions = {t: ex.position(i) for i, t in enumerate(self.tickers)}
        if positions:
            pipe.hset(self.keys.positions, mapping=positions)
        pipe.hset(self.keys.exec_state, mapping={
            "cash": ex.cash / self.x.TICKS_PER_UNIT, "equity": ex.equity / self.x.TICKS_PER_UNIT,
            "day_pnl": ex.day_pnl / self.x.TICKS_PER_UNIT, "fees": ex.fees / self.x.TICKS_PER_UNIT,
            "halted": int(ex.halted), "halt_reason": ex.halt_reason, "journal_records": self.journal.records,
            "resumes": self._resumes,
        })
        if self.shard is not None:  # what the other shards' limits count: this shard's exposure and day's PnL
            name = self.shard.name
            pipe.hset(self.keys.exec_risk, mapping={f"gross:{name}": ex.gross, f"day:{name}": self._day,
                                                    f"pnl:{name}": ex.day_pnl})
        pipe.set(self.keys.exec_published, first_seq + len(events))
        if self.fence is None:
            pipe.execute()
        else:
            self.fence.execute(pipe)

    # -- the loop --------------------------------------------------------------------------------------------
    def _check_venues(self) -> None:
        """Venues silenced or answering again since the last batch (``{p}:exec:venues:silent``); what a venue
        that answers again resolves is journaled and published now."""
        if not self.config.venues:  # the one paper exchange: nothing to silence
            return
        silent = set(self.r.smembers(self.keys.exec_silent_venues))
        for v, name in enumerate(self.venue_names):
            if name in silent and self.executor.venue_connected(v):
                log.warning("venue %s does not answer: no order goes there, its working orders wait", name)
                self.executor.disconnect_venue(v)
            elif name not in silent and not self.executor.venue_connected(v):
                log.warning("venue %s answers again: resolving its working orders", name)
                self.executor.reconnect_venue(v, time.time_ns())
                events = self.x.drain_events(self.executor)
                if len(events):
                    self._journal_and_publish(events)

    def _journal_and_publish(self, events: np.ndarray) -> None:
        """Journal ``events`` (replicated first under a fence), then publish them."""
        first = self.journal.records
        if self.fence is not None:  # replicated (and fenced) before this instance acts on it
            self.fence.append(first, events)
        self.journal.append(events)  # durable before anything is published or acknowledged
        self._account(events)
        self._publish(first, events)

    def _share_loss_limit(self, day: int) -> None:
        """This shard halts for the day once the day's loss of all shards together reaches the daily limit: its own
        limit is the limit less what the other shards lost today (as they last published it)."""
        self._day = max(self._day, day)
        risk = self.r.hgetall(self.keys.exec_risk)
        others = sum(int(risk.get(f"pnl:{name}", 0)) for name in self.shard.others()
                     if int(risk.get(f"day:{name}", -1)) == self._day)
        self.executor.set_daily_loss_limit(self.config.daily_loss_limit + others / self.x.TICKS_PER_UNIT)

    def _check_halt(self) -> None:
        """The kill switch (``halt``), and each release of it once (``exec_resume_seq``: every executor, every
        shard, resumes once per ``hft execute resume``, even one that was down meanwhile)."""
        flag, released = self.r.mget(self.keys.exec_halt, self.keys.exec_resume_seq)
        if flag == "halt":
            if not self.executor.halted:
                log.warning("kill switch: halting the executor")
                self.executor.halt()
            return
        if int(released or 0) > self._resumes:
            self._resumes = int(released or 0)
            if self.executor.halted:
                log.warning("kill switch released: resuming")
                self.executor.resume(time.time_ns())

    def _read(self, pending: bool) -> list:
        """Entries of the predictions stream for this consumer: its pending ones (delivered, not acknowledged), or
        new ones (waiting up to ``block_ms``). Under a fence, every read checks the lease and renews it; waiting
        takes nothing (a read that takes entries must be fenced, and a fenced script cannot block)."""
        if self.fence is None:
            reply = self.r.xreadgroup(self.group, self.consumer, {self.stream: "0" if pending else ">"}, count=self.batch,
                                      block=None if pending else self.block_ms)
            return reply[0][1] if reply else []
        entries = self.fence.read(self.group, self.consumer, self.stream, self.batch, pending)
        if not entries and not pending:
            if self._last_seen is None:
                group = next(g for g in self.r.xinfo_groups(self.stream) if g["name"] == self.group)
                self._last_seen = group["last-delivered-id"]
            if self.r.xread({self.stream: self._last_seen}, count=1, block=self.block_ms):
                entries = self.fence.read(self.group, self.consumer, self.stream, self.batch, pending)
        if entries and not pending:
            self._last_seen = entries[-1][0]
        return entries

    def _parse(self, entries) -> tuple[np.ndarray, np.ndarray, Tally]:
        """Stream entries -> prediction records (unknown tickers get an id the executor refuses) and, in the same
        order, their bars' production times (ns, 0 when unknown: for the path latency); malformed entries are
        counted and left out (they are acknowledged: retrying cannot fix them)."""
        recv = time.time_ns()
        preds = np.zeros(len(entries), dtype=self.x.PREDICTION_DTYPE)
        produced = np.zeros(len(entries), dtype=np.int64)
        n = 0  # records filled so far
        malformed: Tally[str] = Tally()
        unknown = len(self.tickers)
        for entry_id, f in entries:
            if self.shard is not None and not self.shard.decides(f.get("ticker")):
                continue  # another shard's (acknowledged here with the batch: that shard's group delivers it there)
            try:
                ticker = f["ticker"].upper()
                row = preds[n]
                # as of the bar's end: when the prediction became possible (the stale guard's origin); an
                # unknown interval raises ValueError: malformed
                row["ts_ns"] = bar_end_ns(int(f["bar_ts"]) * 1_000_000, f.get("interval") or "1m")
                row["recv_ns"] = self._received(row["ts_ns"], f, recv)
                row["instrument"] = self.ids.get(ticker, unknown)
                row["probability"] = float(f["probability"])
                row["price"] = float(f.get("close", "nan"))
                row["volatility"] = float(f.get("volatility", "nan"))
            except (KeyError, ValueError, TypeError, AttributeError, OverflowError) as exc:
                malformed[MALFORMED] += 1
                log.warning("predictions entry %s refused: %s: %s", entry_id, MALFORMED, exc)
                continue
            raw = f.get("produced_ns")
            produced[n] = int(raw) if isinstance(raw, str) and raw.isdigit() and int(raw) < 2**63 else 0
            n += 1
        preds, produced = preds[:n], produced[:n]
        # Decide in bar-time order: a batch may interleave tickers (the streaming job writes ticker by
        # ticker), and the executor's clock (stale guard, order-rate bucket) must not run backwards.
        order = np.argsort(preds["ts_ns"], kind="stable")
        return preds[order], produced[order], malformed

    def _received(self, bar_ts_ns: int, f: dict, now_ns: int) -> int:
        """The prediction's arrival time: the wall clock, or its bar's end (``bar_ts_ns``) on the replay clock."""
        return bar_ts_ns if self.replay_clock else now_ns

    def step(self) -> StepResult:
        """Read one batch, decide, journal, publish, acknowledge. Returns what happened."""
        from hft.observability import metrics as m

        self._check_halt()
        self._check_venues()
        entries: list = []
        if self._pending:  # after a restart: what was delivered to us before the crash, not acknowledged
            entries = self._read(pending=True)
            self._pending = bool(entries)
        if not entries:
            entries = self._read(pending=False)
        result = StepResult(entries=len(entries))
        if not entries:
            return result
        # Again now: the read may have blocked for block_ms, and a halt set meanwhile must stop these entries too.
        self._check_halt()
        received_ns = time.time_ns()
        preds, produced, malformed = self._parse(entries)
        if self.shard is not None and len(preds):
            self._share_loss_limit(int(preds["ts_ns"].max()) // DAY_NS)
        decisions = np.zeros(len(preds), dtype=self.x.DECISION_DTYPE)
        t0 = time.perf_counter_ns()
        self.executor.on_predictions(preds, decisions)
        spent = time.perf_counter_ns() - t0
        decided_ns = time.time_ns()
        events = self.x.drain_events(self.executor)
        self._journal_and_publish(events)
        sent_ns = time.time_ns()
        self.r.xack(self.stream, self.group, *[entry_id for entry_id, _ in entries])
        self._observe_path(preds, produced, decisions, events, (received_ns, decided_ns, sent_ns))

        result.events = len(events)
        result.orders = int((decisions["action"] == self.x.Action.order).sum())
        result.fills = int((events["type"] == self.x.EventType.fill).sum())
        rejected = decisions["reason"][decisions["action"] == self.x.Action.reject]
        result.rejected = malformed + Tally(self.x.REASONS[r] for r in rejected)
        if len(preds):
            m.EXEC_DECISION_SECONDS.observe(spent / len(preds) / 1e9)
        for a, n in zip(*np.unique(decisions["action"], return_counts=True)):
            m.EXEC_DECISIONS.labels(self.x.ACTIONS[a]).inc(int(n))
        for reason, n in result.rejected.items():
            m.EXEC_REJECTED.labels(reason).inc(n)
        for e in events[events["type"] == self.x.EventType.order_sent]:
            m.EXEC_ORDERS.labels(self.tickers[e["instrument"]], "buy" if e["qty"] > 0 else "sell").inc()
        for e in events[events["type"] == self.x.EventType.fill]:
            m.EXEC_FILLS.labels(self.tickers[e["instrument"]]).inc()
        self._observe_slippage(preds, decisions, events)
        self.update_gauges()
        return result

    def _observe_slippage(self, preds, decisions, events) -> None:
        """How far each fill is from the price expected when its order was decided (the bar's close that the
        prediction carried), in basis points: ``hft_exec_fill_slippage_bps``, positive when worse for us."""
        from hft.observability.metrics import EXEC_FILL_SLIPPAGE

        ordered = decisions["action"] == self.x.Action.order
        for oid, px in zip(decisions["order_id"][ordered].tolist(), preds["price"][ordered].tolist()):
            if px > 0:
                self._expected_px[oid] = px
        ev_type = events["type"]
        for e in events[(ev_type == self.x.EventType.fill) | (ev_type == self.x.EventType.order_done)]:
            oid = int(e["order_id"])
            if int(e["type"]) == self.x.EventType.order_done:
                self._expected_px.pop(oid, None)
                continue
            expected = self._expected_px.get(oid)
            if expected:
                price = int(e["price"]) / self.x.TICKS_PER_UNIT
                side = 1.0 if int(e["qty"]) > 0 else -1.0
                EXEC_FILL_SLIPPAGE.observe(side * (price - expected) / expected * 1e4)

    def _observe_path(self, preds, produced, decisions, events, at: tuple[int, int, int]) -> None:
        """The executor's stages of the path latency: every prediction received and decided; those that became
        an order, sent (journaled and published); each fill, from the bar of its instrument that executed it."""
        from hft.observability.metrics import observe_path

        received_ns, decided_ns, sent_ns = at
        observe_path("received", received_ns, produced)
        observe_path("decided", decided_ns, produced)
        observe_path("sent", sent_ns, produced[decisions["action"] == self.x.Action.order])
        fills = events["instrument"][events["type"] == self.x.EventType.fill]
        if len(fills):
            latest = dict(zip(preds["instrument"].tolist(), produced.tolist()))  # the batch's last bar per ticker
            observe_path("filled", sent_ns, [latest.get(i, 0) for i in fills.tolist()])

    def update_gauges(self) -> None:
        from hft.observability import metrics as m

        ex = self.executor
        for i, t in enumerate(self.tickers):
            m.EXEC_POSITION.labels(t).set(ex.position(i))
            m.EXEC_PNL.labels(t).set(self.pnl(i))
        m.EXEC_EQUITY.set(ex.equity / self.x.TICKS_PER_UNIT)
        m.EXEC_HALTED.set(int(ex.halted))
        m.EXEC_DAY_PNL.set(ex.day_pnl / self.x.TICKS_PER_UNIT)
        m.EXEC_LOSS_LIMIT.set(self.config.daily_loss_limit)
        for group in self.r.xinfo_groups(self.stream):  # Redis 7: lag = entries not yet delivered to the group
            if group.get("name") == self.group:
                m.EXEC_PENDING.set(int(group.get("pending") or 0))
                if group.get("lag") is not None:
                    m.EXEC_LAG.set(int(group["lag"]))

    def pnl(self, instrument: int) -> float:
        """PnL of one ticker since the journal began: its cash flow plus its position at the last price."""
        ex = self.executor
        return (int(self._cash[instrument]) + ex.position(instrument) * ex.last_price(instrument)) / self.x.TICKS_PER_UNIT

    def run(self, stop_when_idle_s: float | None = None, max_seconds: float | None = None) -> Tally:
        """Loop until idle for ``stop_when_idle_s`` (None: forever) or ``max_seconds``; returns totals."""
        totals: Tally[str] = Tally()
        started = idle_since = time.monotonic()
        while True:
            r = self.step()
            now = time.monotonic()
            if r.entries:
                idle_since = now
                totals.update(entries=r.entries, orders=r.orders, fills=r.fills)
                totals.update({f"rejected:{k}": v for k, v in r.rejected.items()})
            elif stop_when_idle_s is not None and now - idle_since >= stop_when_idle_s:
                return totals
            if max_seconds is not None and now - started >= max_seconds:
                return totals

    def summary(self) -> list[str]:
        ex = self.executor
        c = ex.counters()
        lines = [f"{'ticker':<8}{'position':>10}{'last':>12}{'pnl':>12}"]
        for i, t in enumerate(self.tickers):
            lines.append(f"{t:<8}{ex.position(i):>10}{ex.last_price(i) / self.x.TICKS_PER_UNIT:>12.4f}{self.pnl(i):>12.2f}")
        lines.append(f"equity {ex.equity / self.x.TICKS_PER_UNIT:.2f}, fees {ex.fees / self.x.TICKS_PER_UNIT:.2f}, "
                     f"gross exposure {ex.gross / self.x.TICKS_PER_UNIT:.2f}, halted: {ex.halted}"
                     + (f" ({ex.halt_reason})" if ex.halted else ""))
        refused = {k: v for k, v in c["by_reason"].items() if v}
        lines.append(f"this run: {c['predictions']} predictions, {c['orders']} orders, {c['fills']} fills, "
                     f"refused {refused or 'none'}")
        return lines

    def close(self) -> None:
        self.journal.close()


def set_halt(redis_client, prefix: str = "hft", halt: bool = True) -> None:
    """The kill switch, from anywhere: every executor reads it before its next decision; a release counts once
    for each of them."""
    keys = RedisKeys(prefix)
    if halt:
        redis_client.set(keys.exec_halt, "halt")
        return
    pipe = redis_client.pipeline(transaction=True)
    pipe.set(keys.exec_halt, "resume")
    pipe.incr(keys.exec_resume_seq)
    pipe.execute()
