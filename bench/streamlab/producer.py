"""The load generator: bars sent to Kafka at an offered rate, each stamped with its send time."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace


@dataclass
class Sent:
    count: int
    first_ns: int
    last_ns: int
    max_behind_ms: float  # how far the producer fell behind its schedule (it must not, for a fair run)
    failed: int

    @property
    def rate(self) -> float:
        return self.count / max(1e-9, (self.last_ns - self.first_ns) / 1e9)


def produce(bootstrap: str, msgs: list, rate: float, topic: str) -> Sent:
    """Send ``msgs`` paced at ``rate`` bars/s (0: as fast as possible), stamping produced_ns at send time."""
    from hft.streaming.kafka_io import producer
    from hft.streaming.messages import encode_bar

    p = producer(bootstrap, "bench-producer")
    failed = [0]

    def cb(err, _msg):
        if err is not None:
            failed[0] += 1

    # Encoded beforehand, produced_ns appended at send time: the load generator shares the 2 cores with
    # what it measures, so it must cost as little as it can (encode_bar per send cost ~0.2 core at 5,000/s).
    heads = [encode_bar(replace(m, produced_ns=None))[:-1] + b',"produced_ns":' for m in msgs]
    keys = [m.ticker.encode() for m in msgs]
    n = len(msgs)
    i = 0
    behind = 0.0
    first_ns = time.time_ns()
    start = time.perf_counter()
    while i < n:
        now = time.perf_counter()
        due = n if not rate else min(n, int((now - start) * rate) + 1)
        if due <= i:
            time.sleep(min(0.002, (i / rate) - (now - start)))
            continue
        if rate:
            behind = max(behind, (now - start) - i / rate)
        for k in range(i, due):
            value = b"%s%d}" % (heads[k], time.time_ns())
            while True:
                try:
                    p.produce(topic, value=value, key=keys[k], on_delivery=cb)
                    break
                except BufferError:
                    p.poll(0.01)
        i = due
        p.poll(0)
    last_ns = time.time_ns()
    left = p.flush(60)
    return Sent(n, first_ns, last_ns, behind * 1000, failed[0] + left)
