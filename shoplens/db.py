"""SQLite helpers shared by the catalog store and the job table."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_transaction(
    conn: sqlite3.Connection, lock: threading.Lock | threading.RLock
) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` transaction on a connection shared by threads.

    IMMEDIATE takes SQLite's write lock up front, so two writers queue on the
    busy timeout instead of failing half-way with "database is locked"; the
    Python lock keeps this process's threads off the connection meanwhile.
    """
    with lock:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
