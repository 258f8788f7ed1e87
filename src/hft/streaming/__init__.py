"""Real-time path: Kafka message codec, per-ticker feature state, Redis prediction store, collectors."""
