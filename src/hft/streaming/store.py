"""Redis: the latest prediction per ticker, a capped stream of predictions, and the streaming job's state.

Keys (``{p}`` = prefix, default ``hft``)::

    {p}:pred:latest:{ticker}        hash: probability, bar_ts (ms), interval, model_version, produced_ns,
                                    predicted_ns, written_ns — with a TTL
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

_WRITE_PREDICTION = """
-- KEYS: seen, latest, stream ; ARGV: ttl_s, stream_maxlen, then field/value pairs
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[2], unpack(fields))
  redis.call('EXPIRE', KEYS[2], tonumber(ARGV[1]))
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
  return 1
end
return 0
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

    def fields(self) -> dict[str, str]:
        return {
            "ticker": self.ticker, "interval": self.interval, "bar_ts": str(self.ts_ms),
            "probability": repr(float(self.probability)), "model_version": self.model_version,
            "produced_ns": str(self.produced_ns or ""), "predicted_ns": str(self.predicted_ns),
            "written_ns": str(time.time_ns()),
        }


def _bar_json(bar: BarMessage) -> str:
    return json.dumps([bar.open, bar.high, bar.low, bar.close, bar.volume])


class RedisStore:
    def __init__(self, client, prefix: str = "hft", ttl_s: int = 3600, stream_maxlen: int = 100_000, state_keep: int = 64):
        self.r = client
        self.p = prefix
        self.ttl_s = ttl_s
        self.maxlen = stream_maxlen
        self.keep = state_keep
        self._script = client.register_script(_WRITE_PREDICTION)

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
        for p in predictions:
            flat = [x for kv in p.fields().items() for x in kv]
            self._script(
                keys=[f"{self.p}:pred:seen:{p.ticker}:{p.interval}:{p.ts_ms}", self.latest_key(p.ticker), self.stream_key],
                args=[self.ttl_s, self.maxlen, *flat],
                client=pipe,
            )
        pipe.set(f"{self.p}:stream:last_batch", batch_id)
        results = pipe.execute()
        self._trim_state(by_key)
        offset = 2 * len(by_key)
        return int(sum(results[offset : offset + len(predictions)]))

    def _trim_state(self, by_key) -> None:
        """Keep only the newest ``keep`` bars per key (older ones can never enter a window again)."""
        for ticker, interval in by_key:
            key = self._state_key(ticker, interval)
            fields = sorted(int(f) for f in self.r.hkeys(key))
            if len(fields) > self.keep:
                self.r.hdel(key, *[str(f) for f in fields[: -self.keep]])

    # -- reads ---------------------------------------------------------------------------------------------
    def latest(self, ticker: str) -> dict[str, str]:
        return self.r.hgetall(self.latest_key(ticker))

    def stream(self, count: int | None = None) -> list[dict[str, str]]:
        return [fields for _, fields in self.r.xrange(self.stream_key, count=count)]
