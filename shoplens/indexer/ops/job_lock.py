"""One admin job at a time across every replica: a PostgreSQL session advisory lock.

The runner that takes a job holds the lock on a connection of its own for as
long as the job runs. PostgreSQL releases it the moment that connection ends,
so a replica that dies (SIGKILL, a lost host) frees it at once, and a replica
whose loop then finds the job ``running`` with a stale heartbeat can take it
over (:mod:`shoplens.indexer.ops.jobs`). A replica that is alive but slow to
heartbeat still holds the lock: the job is never run twice at once.

On SQLite (one service per data dir) there is nothing to share: the lock is
always granted, and the job table alone orders the work, as before.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from shoplens.db import is_postgres_url
from shoplens.db.database import lock_key

log = logging.getLogger(__name__)

JOB_LOCK_KEY = lock_key("shoplens:job-runner")


class JobLock:
    """``try_acquire`` / ``release`` around one job; ``alive`` while it runs."""

    def __init__(self, target: Path | str, *, timeout_s: float = 10.0) -> None:
        self._url = str(target) if is_postgres_url(target) else None
        self._timeout_s = timeout_s
        self._conn: Any = None
        self._mutex = threading.Lock()  # the job loop and the heartbeat thread
        self.held = False

    def _connection(self) -> Any:
        import psycopg

        assert self._url is not None  # only called on PostgreSQL
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(
                self._url, autocommit=True, connect_timeout=max(1, int(self._timeout_s))
            )
        return self._conn

    def try_acquire(self) -> bool:
        """Take the lock if no other runner holds it (never waits)."""
        if self._url is None:
            self.held = True
            return True
        with self._mutex:
            row = (
                self._connection()
                .execute("SELECT pg_try_advisory_lock(%s)", (JOB_LOCK_KEY,))
                .fetchone()
            )
            self.held = bool(row[0])
            return self.held

    def alive(self) -> bool:
        """Whether the lock is still ours: its connection still answers (a
        dropped connection has released it on the server)."""
        if self._url is None:
            return self.held
        with self._mutex:
            if not self.held or self._conn is None or self._conn.closed:
                return False
            try:
                self._conn.execute("SELECT 1")
            except Exception as exc:
                log.warning("job lock connection lost: %s", exc)
                self.held = False
            return self.held

    def release(self) -> None:
        if self._url is None:
            self.held = False
            return
        with self._mutex:
            if self.held and self._conn is not None and not self._conn.closed:
                try:
                    self._conn.execute("SELECT pg_advisory_unlock(%s)", (JOB_LOCK_KEY,))
                except Exception:  # the connection is gone, and the lock with it
                    log.warning("releasing the job lock failed; its connection is gone")
            self.held = False

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()  # releases anything still held
                self._conn = None
            self.held = False
