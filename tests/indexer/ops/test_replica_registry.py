"""The replica registry on a real PostgreSQL server: heartbeats, the live count, a
dead replica (silent past ``stale_s``) not counted, a clean stop unregistered."""

from __future__ import annotations

import time

import psycopg

from shoplens.indexer.ops.replicas import (
    ReplicaRegistry,
    live_replicas,
    start_heartbeat,
    stop_heartbeat,
)


def test_live_replicas_are_counted_and_a_silent_one_is_not(pg_url: str) -> None:
    counts: list[int] = []
    a = start_heartbeat(pg_url, "replica-a", interval_s=0.1, stale_s=2.0, version=lambda: "s1")
    b = start_heartbeat(pg_url, "replica-b", interval_s=0.1, stale_s=2.0, on_count=counts.append)
    try:
        assert b.count == 2 and counts[0] == 2  # counted before its first request
        live = live_replicas(pg_url, stale_s=2.0)
        assert [(r["replica_id"], r["version"]) for r in live] == [
            ("replica-a", "s1"),
            ("replica-b", None),
        ]
        # A third replica that died long ago: its row stays, it is not counted.
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO replicas VALUES ('replica-dead', 'h', 1, 0, %s, NULL)",
                (time.time() - 60,),
            )
        time.sleep(0.3)
        assert b.count == 2
        registry = ReplicaRegistry(pg_url, stale_s=2.0)
        try:
            assert registry.live_count() == 2
            assert registry.sweep() == 1  # silent for 20 stale periods: forgotten
        finally:
            registry.close()
    finally:
        stop_heartbeat(a)
    deadline = time.monotonic() + 5
    while b.count != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert b.count == 1 and counts[-1] == 1  # A unregistered on stop: B alone again
    stop_heartbeat(b)
    assert live_replicas(pg_url, stale_s=2.0) == []
