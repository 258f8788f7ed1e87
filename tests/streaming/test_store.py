"""The Redis store's one-script commit against a real Redis: state kept to its newest bars, each series'
prediction written once, the latest hash holding each ticker's newest prediction, the batch id."""

from __future__ import annotations

import pytest
import redis

from hft.schemas import Prediction
from hft.streaming.messages import BarMessage
from hft.streaming.store import RedisStore

T0 = 1_709_908_200_000  # 2024-03-08 14:30 UTC, ms
MINUTE = 60_000


@pytest.fixture
def store(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    return RedisStore(client, state_keep=4)


def bar(ticker: str, i: int, interval: str = "1m") -> BarMessage:
    return BarMessage(ticker, interval, T0 + i * MINUTE, 10.0 + i, 11.0 + i, 9.0 + i, 10.5 + i, 100 + i)


def pred(ticker: str, i: int, interval: str = "1m", p: float = 0.5) -> Prediction:
    return Prediction(ticker, interval, T0 + i * MINUTE, p, "7", 1, 2, 10.5 + i, 0.001)


def test_commit_keeps_the_newest_bars_per_series_and_loads_them_in_time_order(store):
    store.commit(0, [bar("AAA", i) for i in (2, 0, 1)] + [bar("BBB", 0)], [], gaps={("AAA", "1m"): (19790, 0.0)},
                 volume={("AAA", "1m"): (19770, {19770: {0: [50.0, 2.0]}, 19790: {0: [300.0, 3.0]}})})
    store.commit(1, [bar("AAA", i) for i in (3, 4, 5)], [], gaps={("AAA", "1m"): (19790, -0.0125)},
                 volume={("AAA", "1m"): (19776, {19790: {0: [612.0, 6.0]}})})
    loaded = store.load_state([("AAA", "1m"), ("BBB", "1m"), ("CCC", "1m")])
    state = {key: bars for key, (bars, _, _) in loaded.items()}
    assert [b.ts_ms for b in state[("AAA", "1m")]] == [T0 + i * MINUTE for i in (2, 3, 4, 5)]
    assert state[("AAA", "1m")][-1] == bar("AAA", 5)
    assert state[("BBB", "1m")] == [bar("BBB", 0)] and state[("CCC", "1m")] == []
    # the session gap beside the bars: the newest one committed, none where none was
    assert loaded[("AAA", "1m")][1] == (19790, -0.0125) and loaded[("BBB", "1m")][1] is None
    # volume totals: the changed day rewritten, a day before the oldest kept dropped
    assert loaded[("AAA", "1m")][2] == {19790: {"0": [612.0, 6.0]}} and loaded[("BBB", "1m")][2] == {}
    assert store.r.ttl(store.keys.session_gaps) > 0
    assert store.last_batch() == 1


def test_commit_writes_each_series_prediction_once_even_under_another_batch_id(store):
    assert store.commit(0, [], [pred("AAA", 1), pred("AAA", 2)]) == 2
    # a later batch carrying bars already predicted (a lost checkpoint): only what is newer per series
    again = [pred("AAA", 5, "5m"), pred("AAA", 1), pred("AAA", 2), pred("AAA", 3), pred("BBB", 1)]
    assert store.commit(1, [], again) == 3
    got = [(e["ticker"], e["interval"], int(e["bar_ts"])) for e in store.stream()]
    assert got == [("AAA", "1m", T0 + MINUTE), ("AAA", "1m", T0 + 2 * MINUTE), ("AAA", "5m", T0 + 5 * MINUTE),
                   ("AAA", "1m", T0 + 3 * MINUTE), ("BBB", "1m", T0 + MINUTE)]
    assert store.commit(2, [], [pred("AAA", 3, p=0.9)]) == 0


def test_unwritten_is_what_a_commit_would_write(store):
    store.commit(0, [], [pred("AAA", 1), pred("AAA", 2), pred("BBB", 1, "5m")])
    replay = [pred("AAA", 2), pred("AAA", 3), pred("BBB", 1, "5m"), pred("BBB", 1), pred("CCC", 0)]
    new = store.unwritten(replay)
    assert new == [pred("AAA", 3), pred("BBB", 1), pred("CCC", 0)]
    assert store.commit(1, [], replay) == len(new)
    assert store.unwritten(replay) == [] and store.unwritten([]) == []
    assert [e["probability"] for e in store.stream()].count("0.9") == 0


def test_latest_holds_each_tickers_last_written_prediction_with_a_ttl(store):
    store.commit(0, [], [pred("AAA", 1, p=0.1), pred("AAA", 2, p=0.2), pred("BBB", 1, p=0.3)])
    latest = store.latest("AAA")
    assert latest["bar_ts"] == str(T0 + 2 * MINUTE) and latest["probability"] == "0.2"
    assert latest["model_version"] == "7" and float(latest["close"]) == 12.5
    assert 0 < store.r.ttl(store.latest_key("AAA")) <= store.ttl_s
    store.commit(1, [], [pred("AAA", 2, p=0.8)])  # already written: the latest hash is not touched
    assert store.latest("AAA")["probability"] == "0.2" and store.latest("BBB")["probability"] == "0.3"


def test_stream_is_capped_but_never_trims_what_a_consumer_group_has_not_acknowledged(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    store = RedisStore(client, stream_maxlen=20)
    store.commit(0, [], [pred("AAA", i) for i in range(5)])
    client.xgroup_create(store.stream_key, "executor", id="0")
    read = client.xreadgroup("executor", "c1", {store.stream_key: ">"}, count=3)[0][1]  # delivered, not acked
    for batch in range(1, 10):  # the executor falls behind by 90 predictions
        store.commit(batch, [], [pred("AAA", 5 + 10 * (batch - 1) + i) for i in range(10)])
    assert client.xlen(store.stream_key) == store.stream_length == 95  # nothing trimmed: entry 0 is pending
    first = client.xrange(store.stream_key, count=1)[0][0]
    assert first == read[0][0]
    client.xack(store.stream_key, "executor", *[i for i, _ in read])
    rest = client.xreadgroup("executor", "c1", {store.stream_key: ">"}, count=70)[0][1]
    client.xack(store.stream_key, "executor", *[i for i, _ in rest])  # 73 acknowledged, 22 still unread
    store.commit(10, [], [pred("AAA", 200)])
    remaining = client.xrange(store.stream_key)
    assert len(remaining) == 23 == store.stream_length  # trimmed to the oldest entry not yet acknowledged
    assert remaining[0][0] > rest[-1][0]
    unread = client.xreadgroup("executor", "c1", {store.stream_key: ">"})[0][1]
    assert len(unread) == 23  # the executor still gets every prediction it had not read


def test_stream_without_consumer_groups_is_capped_at_about_maxlen(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    store = RedisStore(client, stream_maxlen=20)
    for batch in range(10):
        store.commit(batch, [], [pred("AAA", 10 * batch + i) for i in range(10)])
    assert 20 <= client.xlen(store.stream_key) <= 22


def test_a_commit_no_replica_acknowledges_is_not_acknowledged_and_its_replay_writes_nothing_twice(redis_url):
    import redis as redis_py

    from hft.streaming.store import NotReplicatedError

    client = redis_py.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    # this Redis has no replica: a store that needs one must refuse to call the batch done
    lonely = RedisStore(client, replicas_to_ack=1, ack_timeout_ms=50)
    with pytest.raises(NotReplicatedError, match="0 of 1 replica"):
        lonely.commit(7, [bar("AAA", 0)], [pred("AAA", 0)], {("market.bars", 0): 1})
    # the script ran (WAIT comes after it): the replay of the batch finds it committed and adds nothing
    assert RedisStore(client).commit(7, [bar("AAA", 0)], [pred("AAA", 0)], {("market.bars", 0): 1}) == 0
    assert len(RedisStore(client).stream()) == 1
