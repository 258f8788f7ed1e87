"""Redis: the latest prediction per ticker, a capped stream of predictions, and the streaming job's state.

Keys (``{p}`` = prefix, default ``hft``)::

    {p}:pred:latest:{ticker}        hash: probability, bar_ts (ms), interval, model_version, close,
                                    volatility (per bar), produced_ns, predicted_ns, written_ns — with a TTL
    {p}:predictions                 stream, about ``stream_maxlen`` entries, one per (ticker, interval, bar
                                    time); never trimmed past what a consumer group has not acknowledged
    {p}:pred:written                hash: {ticker}:{interval} -> bar time (ms) of the newest prediction written
    {p}:state:{interval}:{ticker}   hash: bar time (ms) -> bar JSON, the recent bars of the feature state
    {p}:stream:session_gaps         hash: {interval}:{ticker} -> [session day, overnight gap] of the
                                    series' newest session (the feature state's, beside its bars)
    {p}:volume:{interval}:{ticker}  hash: session day number -> {slice: [summed volume, bars]}, the series'
                                    volume totals of its recent sessions (the time-of-day volume norm)
    {p}:stream:last_batch           id of the last micro-batch fully committed (information only)
    {p}:stream:offsets              hash: {topic}:{partition} -> next Kafka offset to process

A micro-batch commits in one Lua script (atomic: a script runs alone): state updates and trimming,
prediction writes, the Kafka offsets it consumed and the batch id. A crash before the script leaves nothing.
What was already committed is recognised by its **Kafka offsets**, not by Spark's batch id: records below a
partition's committed offset are skipped, so a replayed batch, a lost or replaced checkpoint (whose batch
ids restart at 0) and a restart from the committed offsets all resume exactly where the last commit ended.
A prediction is never appended twice to the stream: the feature state admits
a series' bars in strictly increasing time, so its predictions are too, and one is written only when newer
than the series' mark in ``{p}:pred:written`` (one hash field per series instead of a marker key per
prediction).
"""

from __future__ import annotations

import json
import time

from hft.features.definitions import VOLUME_NORM_DAYS
from hft.redis_conn import NotReplicatedError, wait_replicated
from hft.schemas import Prediction, RedisKeys
from hft.streaming.messages import BarMessage, encode_json
from hft.streaming.state import SessionGap, VolumeDays

#: A series' stored state: its bars (time order), its newest session's overnight gap, its volume totals.
SeriesState = tuple[list[BarMessage], SessionGap | None, VolumeDays]

# Prediction is defined once, in hft.schemas
__all__ = ["NotReplicatedError", "Prediction", "RedisStore", "entry_values"]


_COMMIT = """
-- One call per micro-batch; a script runs alone, so the batch commits atomically. KEYS: the predictions
-- stream, the written marks, the offsets hash, the last batch id (hft.schemas.RedisKeys names them all).
-- ARGV: the latest hashes' key prefix, ttl_s, stream_maxlen, state_keep, state_ttl_s, batch_id, then JSON documents
-- (all values strings): {state_key: [bar_ts, bar_json, ...]}, [[field values in the order of names]], the
-- offsets {topic:partition: next offset}, the session gaps {interval:ticker: gap_json} (KEYS[5]) and the
-- volume totals {volume_key: [oldest day kept, day, totals_json, ...]} (days before the oldest are dropped).
-- State hashes keep their newest state_keep bars. A prediction is written only if its bar time is newer
-- than its series' mark in KEYS[2] (then moved to it); returns how many were written.
local names = {'ticker', 'interval', 'bar_ts', 'probability', 'model_version', 'close', 'volatility',
               'produced_ns', 'predicted_ns', 'written_ns'}
local latest_prefix, ttl, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local keep, state_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local CHUNK = 2000  -- arguments per command: unpack() has a stack limit
local function each_chunk(command, key, items)
  for i = 1, #items, CHUNK do
    redis.call(command, key, unpack(items, i, math.min(i + CHUNK - 1, #items)))
  end
end
for key, items in pairs(cjson.decode(ARGV[7])) do
  each_chunk('HSET', key, items)
  redis.call('EXPIRE', key, state_ttl)
  local n = redis.call('HLEN', key)
  if n > keep then  -- drop every bar at or before the (n - keep)-th oldest: numbers sorted in C, no comparator
    local stamps, times = redis.call('HKEYS', key), {}
    for i = 1, n do times[i] = tonumber(stamps[i]) end
    table.sort(times)
    local cutoff, old = times[n - keep], {}
    for i = 1, n do
      if tonumber(stamps[i]) <= cutoff then old[#old + 1] = stamps[i] end
    end
    each_chunk('HDEL', key, old)
  end
end
local written, marks, newest = 0, {}, {}
local marks_key = KEYS[2]
for _, v in ipairs(cjson.decode(ARGV[8])) do
  local series, bar_ts = v[1] .. ':' .. v[2], tonumber(v[3])
  if marks[series] == nil then marks[series] = tonumber(redis.call('HGET', marks_key, series) or '-1') end
  if bar_ts > marks[series] then
    marks[series] = bar_ts
    local fields = {}
    for j = 1, #names do
      fields[#fields + 1] = names[j]
      fields[#fields + 1] = v[j]
    end
    redis.call('XADD', KEYS[1], '*', unpack(fields))
    newest[v[1]] = fields
    written = written + 1
  end
end
if written > 0 then
  for series, bar_ts in pairs(marks) do redis.call('HSET', marks_key, series, string.format('%d', bar_ts)) end
  redis.call('EXPIRE', marks_key, state_ttl)
end
for ticker, fields in pairs(newest) do  -- the latest hash gets each ticker's newest prediction only
  local latest = latest_prefix .. ticker
  redis.call('HSET', latest, unpack(fields))
  redis.call('EXPIRE', latest, ttl)
end
local offsets_key = KEYS[3]
for tp, next_offset in pairs(cjson.decode(ARGV[9])) do  -- offsets only move forward
  local current = tonumber(redis.call('HGET', offsets_key, tp) or '-1')
  if tonumber(next_offset) > current then redis.call('HSET', offsets_key, tp, next_offset) end
end
redis.call('SET', KEYS[4], ARGV[6])
local gaps = {}
for series, gap in pairs(cjson.decode(ARGV[10])) do
  gaps[#gaps + 1] = series
  gaps[#gaps + 1] = gap
end
if #gaps > 0 then
  each_chunk('HSET', KEYS[5], gaps)
  redis.call('EXPIRE', KEYS[5], state_ttl)
end
for key, items in pairs(cjson.decode(ARGV[11])) do
  local oldest = tonumber(items[1])
  each_chunk('HSET', key, {unpack(items, 2)})
  redis.call('EXPIRE', key, state_ttl)
  local stale = {}
  for _, day in ipairs(redis.call('HKEYS', key)) do
    if tonumber(day) < oldest then stale[#stale + 1] = day end
  end
  if #stale > 0 then redis.call('HDEL', key, unpack(stale)) end
end
-- Trim the stream to about maxlen entries, but never an entry a consumer group has not acknowledged (an
-- executor that falls behind loses nothing; the stream grows instead, visible as its length). Amortised:
-- only once it exceeds maxlen by a tenth, and then by MINID.
local function id_parts(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function id_less(a, b)
  local am, as = id_parts(a)
  local bm, bs = id_parts(b)
  return am < bm or (am == bm and as < bs)
end
local function id_next(id)
  local ms, seq = id_parts(id)
  return string.format('%d-%d', ms, seq + 1)
end
local length = redis.call('XLEN', KEYS[1])
local cap = tonumber(maxlen)
if length > cap + math.max(1, math.floor(cap / 10)) then
  local dropped = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', length - cap)
  local minid = id_next(dropped[#dropped][1])
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
    local info = {}
    for i = 1, #g, 2 do info[g[i]] = g[i + 1] end
    local pending = redis.call('XPENDING', KEYS[1], info['name'])
    local needed = (pending[1] > 0) and pending[2] or id_next(info['last-delivered-id'])
    if id_less(needed, minid) then minid = needed end
  end
  redis.call('XTRIM', KEYS[1], 'MINID', minid)
  length = redis.call('XLEN', KEYS[1])
end
return {written, length}
"""
#: The feature state (bars, session gap, volume totals) of a series without a new bar expires after this long:
#: past the time-of-day volume norm's reach, so a ticker back after a halt still finds the days it reads.
STATE_TTL_S = (VOLUME_NORM_DAYS + 1) * 86_400


def entry_values(p: Prediction, written_ns: int) -> list[str]:
    """Field values in the order of the script's ``names``: ticker, interval, bar_ts, probability,
    model_version, close, volatility, produced_ns, predicted_ns, written_ns."""
    return [p.ticker, p.interval, str(p.ts_ms), repr(float(p.probability)), p.model_version,
            repr(float(p.close)), repr(float(p.volatility)),
            str(p.produced_ns or ""), str(p.predicted_ns), str(written_ns)]


def _volume_fields(days: VolumeDays) -> list[str]:
    """Hash fields and values of a series' volume totals: day, ``{slice: [sum, bars]}`` JSON, ..."""
    return [item for d, slices in days.items() for item in (str(d), encode_json(slices).decode())]


def _bar_json(bar: BarMessage) -> str:
    return encode_json([bar.open, bar.high, bar.low, bar.close, bar.volume]).decode()


class RedisStore:
    def __init__(self, client, prefix: str = "hft", ttl_s: int = 3600, stream_maxlen: int = 100_000, state_keep: int = 64,
                 replicas_to_ack: int = 0, ack_timeout_ms: int = 2000):
        self.r = client
        #: A commit returns only once this many replicas hold it (Redis ``WAIT``): what a failover to a replica
        #: cannot lose. 0: the master alone.
        self.replicas_to_ack = replicas_to_ack
        self.ack_timeout_ms = ack_timeout_ms
        self.p = prefix
        self.keys = RedisKeys(prefix)
        self.ttl_s = ttl_s
        self.maxlen = stream_maxlen
        self.keep = state_keep
        self._commit = client.register_script(_COMMIT)
        #: Entries in the predictions stream after the last commit (above ``stream_maxlen`` while a consumer
        #: group, such as the executor's, has not acknowledged the older ones).
        self.stream_length = 0

    @classmethod
    def from_url(cls, url: str, **kwargs) -> "RedisStore":
        """A store on ``url`` (:func:`hft.redis_conn.connect`); behind Sentinels a commit counts once a replica
        holds it."""
        from hft.redis_conn import connect, replicas_to_ack

        kwargs.setdefault("replicas_to_ack", replicas_to_ack(url))
        return cls(connect(url), **kwargs)

    # -- keys ----------------------------------------------------------------------------------------------
    def latest_key(self, ticker: str) -> str:
        return self.keys.latest(ticker)

    @property
    def stream_key(self) -> str:
        return self.keys.predictions

    def _state_key(self, ticker: str, interval: str) -> str:
        return self.keys.state(interval, ticker)

    # -- liveness ------------------------------------------------------------------------------------------
    def mark_running(self, ttl_s: int = 30) -> None:
        """Heartbeat of the streaming job (``{p}:stream:heartbeat``, epoch ns, expires after ``ttl_s``)."""
        self.r.set(self.keys.heartbeat, time.time_ns(), ex=ttl_s)

    def running(self) -> bool:
        return self.r.exists(self.keys.heartbeat) == 1

    # -- state ---------------------------------------------------------------------------------------------
    def last_batch(self) -> int:
        value = self.r.get(self.keys.last_batch)
        return int(value) if value is not None else -1

    def load_state(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], SeriesState]:
        """Each series' stored bars (in time order), its newest session's overnight gap (None: not stored) and
        its volume totals."""
        if not keys:
            return {}
        pipe = self.r.pipeline(transaction=False)
        for ticker, interval in keys:
            pipe.hgetall(self._state_key(ticker, interval))
            pipe.hgetall(self.keys.volume(interval, ticker))
        pipe.hmget(self.keys.session_gaps, [f"{interval}:{ticker}" for ticker, interval in keys])
        *hashes, gaps = pipe.execute()
        out = {}
        for (ticker, interval), raw, volume, gap in zip(keys, hashes[::2], hashes[1::2], gaps):
            bars = []
            for ts, body in raw.items():
                o, h, lo, c, v = json.loads(body)
                bars.append(BarMessage(ticker, interval, int(ts), o, h, lo, c, float(v)))
            out[(ticker, interval)] = (sorted(bars, key=lambda b: b.ts_ms), tuple(json.loads(gap)) if gap else None,
                                       {int(d): json.loads(body) for d, body in volume.items()})
        return out

    # -- commit --------------------------------------------------------------------------------------------
    def committed_offsets(self) -> dict[tuple[str, int], int]:
        """(topic, partition) -> the next Kafka offset to process, as of the last commit."""
        out = {}
        for tp, offset in self.r.hgetall(self.keys.offsets).items():
            topic, _, partition = tp.rpartition(":")
            out[(topic, int(partition))] = int(offset)
        return out

    def commit(self, batch_id: int, new_bars: list[BarMessage], predictions: list[Prediction],
               offsets: dict[tuple[str, int], int] | None = None,
               gaps: dict[tuple[str, str], SessionGap] | None = None,
               volume: dict[tuple[str, str], tuple[int, VolumeDays]] | None = None) -> int:
        """Atomically store the batch's bars in the state (keeping the newest ``keep`` per key: older ones
        can never enter a window again) with the touched series' session ``gaps`` and ``volume`` totals ((oldest
        day kept, the days the batch changed): those days written, days before the oldest dropped), its predictions, the next offset of each
        partition it consumed (``offsets``) and its id: one script call, five JSON arguments (packing one
        argument per value cost more than the rest of the commit).

        Returns how many predictions were newly written (the rest had been written before)."""
        state: dict[str, list[str]] = {}
        for bar in new_bars:
            state.setdefault(self._state_key(bar.ticker, bar.interval), []).extend((str(bar.ts_ms), _bar_json(bar)))
        now = time.time_ns()
        args = [self.keys.latest_prefix, self.ttl_s, self.maxlen, self.keep, STATE_TTL_S, batch_id,
                encode_json(state), encode_json([entry_values(p, now) for p in predictions]),
                encode_json({f"{t}:{p}": str(o) for (t, p), o in (offsets or {}).items()}),
                encode_json({f"{interval}:{ticker}": encode_json(list(gap)).decode()
                             for (ticker, interval), gap in (gaps or {}).items()}),
                encode_json({self.keys.volume(interval, ticker): [str(oldest), *_volume_fields(days)]
                             for (ticker, interval), (oldest, days) in (volume or {}).items()})]
        keys = [self.keys.predictions, self.keys.pred_written, self.keys.offsets, self.keys.last_batch,
                self.keys.session_gaps]
        written, length = self._commit(keys=keys, args=args)
        self.stream_length = int(length)
        self._replicated(batch_id)
        return int(written)

    def unwritten(self, predictions: list[Prediction]) -> list[Prediction]:
        """The predictions newer than their series' mark: those :meth:`commit` would write now."""
        series = list(dict.fromkeys(f"{p.ticker}:{p.interval}" for p in predictions))
        marks = dict(zip(series, self.r.hmget(self.keys.pred_written, series))) if series else {}
        return [p for p in predictions if p.ts_ms > int(marks[f"{p.ticker}:{p.interval}"] or -1)]

    def _replicated(self, batch_id: int) -> None:
        """Wait until ``replicas_to_ack`` replicas hold the commit, else raise :class:`NotReplicatedError`: the
        batch is not acknowledged, and its replay (the commit is idempotent) waits again."""
        wait_replicated(self.r, self.replicas_to_ack, self.ack_timeout_ms, f"the commit of batch {batch_id}")

    # -- reads ---------------------------------------------------------------------------------------------
    def latest(self, ticker: str) -> dict[str, str]:
        return self.r.hgetall(self.latest_key(ticker))

    def stream(self, count: int | None = None) -> list[dict[str, str]]:
        return [fields for _, fields in self.r.xrange(self.stream_key, count=count)]
