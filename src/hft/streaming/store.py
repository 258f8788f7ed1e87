"""Redis: the latest prediction per ticker, a capped stream of predictions, and the streaming job's state.

Keys (``{p}`` = prefix, default ``hft``)::

    {p}:pred:latest:{ticker}        hash: probability, bar_ts (ms), interval, model_version, close,
                                    volatility (per bar), produced_ns, predicted_ns, written_ns — with a TTL
    {p}:predictions                 stream, capped (MAXLEN ~), one entry per (ticker, bar time)
    {p}:pred:seen:{ticker}:{ts}     dedupe marker of a written prediction (TTL)
    {p}:state:{interval}:{ticker}   hash: bar time (ms) -> bar JSON, the recent bars of the feature state
    {p}:stream:last_batch           id of the last micro-batch fully committed

A micro-batch commits in one MULTI/EXEC: state updates, prediction writes (each guarded by its dedupe
marker inside a Lua script) and the batch id. A crash before EXEC leaves nothing; a replayed batch whose id
is already committed is skipped; a prediction is never appended twice to the stream.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from hft.streaming.messages import BarMessage

_WRITE_PREDICTIONS = """
-- One call per micro-batch. KEYS[1]: the stream. ARGV: prefix, ttl_s, stream_maxlen, then for each
-- prediction the values of the fields below, in order. A prediction is written only if its dedupe marker
-- {prefix}:pred:seen:{ticker}:{interval}:{bar_ts} did not exist; returns how many were written.
local names = {'ticker', 'interval', 'bar_ts', 'probability', 'model_version', 'close', 'volatility', 'produced_ns', 'predicted_ns', 'written_ns'}
local prefix, ttl, maxlen = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = #names
local written = 0
for i = 4, #ARGV, n do
  local ticker, interval, bar_ts = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if redis.call('SET', prefix .. ':pred:seen:' .. ticker .. ':' .. interval .. ':' .. bar_ts, '1', 'NX', 'EX', ttl) then
    local fields = {}
    for j = 1, n do
      fields[#fields + 1] = names[j]
      fields[#fields + 1] = ARGV[i + j - 1]
    end
    local latest = prefix .. ':pred:latest:' .. ticker
    redis.call('HSET', latest, unpack(fields))
    redis.call('EXPIRE', latest, ttl)
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    written = written + 1
  end
end
return written
"""


@dataclass(frozen=True)
class Prediction:
    ticker: str
    interval: str
    ts_ms: int
    probability: float
    model_version: str
    produced_ns: int | None
    predicted_ns: int
    close: float = float("nan")       # the bar's close: the executor's market price
    volatility: float = float("nan")  # per-bar volatility (FeatureSpec.per_bar_volatility): position sizing

    def values(self, written_ns: int) -> list[str]:
        """Field values in the order of the script's ``names``: ticker, interval, bar_ts, probability,
        model_version, close, volatility, produced_ns, predicted_ns, written_ns."""
        return [self.ticker, self.interval, str(self.ts_ms), repr(float(self.probability)), self.model_version,
                repr(float(self.close)), repr(float(self.volatility)),
                str(self.produced_ns or ""), str(self.predicted_ns), str(written_ns)]


def _bar_json(bar: BarMessage) -> str:
    return json.dumps([bar.open, bar.high, bar.low, bar.close, bar.volume])


class RedisStore:
    def __init__(self, client, prefix: str = "hft", ttl_s: int = 3600, stream_maxlen: int = 100_000, state_keep: int = 64):
        self.r = client
        self.p = prefix
        self.ttl_s = ttl_s
        self.maxlen = stream_maxlen
        self.keep = state_keep
        self._script = client.register_script(_WRITE_PREDICTIONS)

    @classmethod
    def from_url(cls, url: str, **kwargs) -> "RedisStore":
        import redis

        return cls(redis.Redis.from_url(url, decode_responses=True), **kwargs)

    # -- keys ----------------------------------------------------------------------------------------------
    def latest_key(self, ticker: str) -> str:
        return f"{self.p}:pred:latest:{ticker}"

    @property
    def stream_key(self) -> str:
        return f"{self.p}:predictions"

    def _state_key(self, ticker: str, interval: str) -> str:
        return f"{self.p}:state:{interval}:{ticker}"

    # -- liveness ------------------------------------------------------------------------------------------
    def mark_running(self, ttl_s: int = 30) -> None:
        """Heartbeat of the streaming job (``{p}:stream:heartbeat``, epoch ns, expires after ``ttl_s``)."""
        self.r.set(f"{self.p}:stream:heartbeat", time.time_ns(), ex=ttl_s)

    def running(self) -> bool:
        return self.r.exists(f"{self.p}:stream:heartbeat") == 1

    # -- state ---------------------------------------------------------------------------------------------
    def last_batch(self) -> int:
        value = self.r.get(f"{self.p}:stream:last_batch")
        return int(value) if value is not None else -1

    def load_state(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], list[BarMessage]]:
        pipe = self.r.pipeline(transaction=False)
        for ticker, interval in keys:
            pipe.hgetall(self._state_key(ticker, interval))
        out = {}
        for (ticker, interval), raw in zip(keys, pipe.execute()):
            bars = []
            for ts, body in raw.items():
                o, h, lo, c, v = json.loads(body)
                bars.append(BarMessage(ticker, interval, int(ts), o, h, lo, c, int(v)))
            out[(ticker, interval)] = sorted(bars, key=lambda b: b.ts_ms)
        return out

    # -- commit --------------------------------------------------------------------------------------------
    def commit(self, batch_id: int, new_bars: list[BarMessage], predictions: list[Prediction]) -> int:
        """Atomically store the batch's bars in the state, its predictions, and its id.

        Returns how many predictions were newly written (the rest had been written before)."""
        pipe = self.r.pipeline(transaction=True)
        by_key: dict[tuple[str, str], list[BarMessage]] = {}
        for bar in new_bars:
            by_key.setdefault((bar.ticker, bar.interval), []).append(bar)
        for (ticker, interval), bars in by_key.items():
            key = self._state_key(ticker, interval)
            pipe.hset(key, mapping={str(b.ts_ms): _bar_json(b) for b in bars})
            pipe.expire(key, 7 * 86_400)
        if predictions:
            now = time.time_ns()
            self._script(keys=[self.stream_key], args=[self.p, self.ttl_s, self.maxlen,
                                                       *(v for p in predictions for v in p.values(now))], client=pipe)
        pipe.set(f"{self.p}:stream:last_batch", batch_id)
        results = pipe.execute()
        self._trim_state(by_key)
        return int(results[2 * len(by_key)]) if predictions else 0

    def _trim_state(self, by_key) -> None:
        """Keep only the newest ``keep`` bars per key (older ones can never enter a window again)."""
        keys = [self._state_key(ticker, interval) for ticker, interval in by_key]
        read = self.r.pipeline(transaction=False)
        for key in keys:
            read.hkeys(key)
        trim = self.r.pipeline(transaction=False)
        for key, fields in zip(keys, read.execute()):
            old = sorted(int(f) for f in fields)[: -self.keep] if len(fields) > self.keep else []
            if old:
                trim.hdel(key, *map(str, old))
        trim.execute()

    # -- reads ---------------------------------------------------------------------------------------------
    def latest(self, ticker: str) -> dict[str, str]:
        return self.r.hgetall(self.latest_key(ticker))

    def stream(self, count: int | None = None) -> list[dict[str, str]]:
        return [fields for _, fields in self.r.xrange(self.stream_key, count=count)]
