"""The replica registry: which ``shoplens serve`` processes share the database now.

Table ``replicas`` (in the shared PostgreSQL database): one row per running
service, ``(replica_id, host, pid, started_at, heartbeat_at, version)``, the
row refreshed every ``settings.replica_heartbeat_s`` by a background thread
and deleted on a clean shutdown. A replica is live while its heartbeat is
younger than ``settings.replica_stale_s``; the count of live replicas is what
each one divides the configured rate limits by (enforced locally: no database
on the search path). Rows of dead replicas are swept by the survivors.

On SQLite (one service per data dir) nothing is registered: the service is
alone by construction, and its SQLite files stay exactly as before.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoplens.db import Database
from shoplens.db.migrations import Migration, migrate

log = logging.getLogger(__name__)

COMPONENT = "replicas"
SCHEMA = """
CREATE TABLE IF NOT EXISTS replicas (
    replica_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at REAL NOT NULL,
    heartbeat_at REAL NOT NULL,
    version TEXT
);
"""
MIGRATIONS = (Migration(1, "replicas table", SCHEMA),)
# Rows silent this many stale periods are deleted (kept a while for `status`).
SWEEP_AFTER_STALE = 20


def new_replica_id() -> str:
    """``<host>-<pid>-<random>``: readable in logs, unique across restarts."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class ReplicaRegistry:
    """The ``replicas`` table of one database (thread-safe)."""

    def __init__(self, target: Path | str, *, stale_s: float = 15.0) -> None:
        self.db = Database(target, name=COMPONENT, timeout_s=10.0)
        self.stale_s = stale_s
        try:
            migrate(self.db, COMPONENT, MIGRATIONS)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def beat(
        self, replica_id: str, version: str | None, *, started_at: float | None = None
    ) -> None:
        """Insert or refresh the replica's row."""
        now = time.time()
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO replicas (replica_id, host, pid, started_at, heartbeat_at, version) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (replica_id) DO UPDATE SET "
                "heartbeat_at = excluded.heartbeat_at, version = excluded.version",
                (
                    replica_id,
                    socket.gethostname(),
                    os.getpid(),
                    now if started_at is None else started_at,
                    now,
                    version,
                ),
            )

    def remove(self, replica_id: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM replicas WHERE replica_id = ?", (replica_id,))

    def sweep(self) -> int:
        """Forget replicas silent for long; how many."""
        before = time.time() - self.stale_s * SWEEP_AFTER_STALE
        with self.db.transaction() as c:
            cur = c.execute("DELETE FROM replicas WHERE heartbeat_at < ?", (before,))
        return cur.rowcount

    def live(self) -> list[dict[str, Any]]:
        """Replicas whose heartbeat is fresh, oldest first."""
        since = time.time() - self.stale_s
        with self.db.locked() as c:
            rows = c.execute(
                "SELECT replica_id, host, pid, started_at, heartbeat_at, version FROM replicas "
                "WHERE heartbeat_at >= ? ORDER BY started_at, replica_id",
                (since,),
            ).fetchall()
        return [
            {
                "replica_id": r[0],
                "host": r[1],
                "pid": int(r[2]),
                "started_at": float(r[3]),
                "heartbeat_at": float(r[4]),
                "version": r[5],
            }
            for r in rows
        ]

    def live_count(self) -> int:
        return len(self.live())


class ReplicaHeartbeat:
    """One service's registration: a thread that refreshes its row every
    ``interval_s``, recounts the live replicas and hands the count to
    ``on_count`` (the rate limiter's share). Removes the row on :meth:`stop`."""

    def __init__(
        self,
        registry: ReplicaRegistry,
        replica_id: str,
        *,
        interval_s: float,
        version: Callable[[], str | None] = lambda: None,
        on_count: Callable[[int], object] = lambda n: None,
    ) -> None:
        self.registry = registry
        self.replica_id = replica_id
        self.interval_s = interval_s
        self._version = version
        self._on_count = on_count
        self._started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoplens-replica", daemon=True)
        self.count = 1

    def start(self) -> None:
        self.tick()  # registered (and counted) before the first request
        self._thread.start()

    def tick(self) -> int:
        """Heartbeat once and recount; the live replicas (at least this one)."""
        self.registry.beat(self.replica_id, self._version(), started_at=self._started)
        self.count = max(1, self.registry.live_count())
        self._on_count(self.count)
        return self.count

    def _run(self) -> None:
        beats = 0
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
                beats += 1
                if beats % 60 == 0:
                    self.registry.sweep()
            except Exception:  # the database is away: keep the last count, retry
                log.exception("replica heartbeat failed")

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)
        try:
            self.registry.remove(self.replica_id)  # the others recount at once
        except Exception:
            log.warning("could not unregister replica %s", self.replica_id)


def start_heartbeat(
    target: Path | str,
    replica_id: str,
    *,
    interval_s: float,
    stale_s: float,
    version: Callable[[], str | None] = lambda: None,
    on_count: Callable[[int], object] = lambda n: None,
) -> ReplicaHeartbeat:
    """Register ``replica_id`` in ``target``'s registry and keep it fresh (a service's start)."""
    registry = ReplicaRegistry(target, stale_s=stale_s)
    beat = ReplicaHeartbeat(
        registry, replica_id, interval_s=interval_s, version=version, on_count=on_count
    )
    try:
        beat.start()
    except BaseException:
        registry.close()
        raise
    return beat


def stop_heartbeat(beat: ReplicaHeartbeat) -> None:
    """Unregister (the other replicas recount at once) and close the registry."""
    beat.stop()
    beat.registry.close()


def live_replicas(target: Path | str, stale_s: float) -> list[dict[str, Any]]:
    """The live replicas of a shared database (``shoplens status``)."""
    registry = ReplicaRegistry(target, stale_s=stale_s)
    try:
        return registry.live()
    finally:
        registry.close()
