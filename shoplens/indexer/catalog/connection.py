"""The catalog's one SQLite connection, and the three ways the store uses it.

One connection shared by the threads of a process, behind one lock: a plain
locked statement, a consistent read view (one deferred transaction), or a
write transaction (``BEGIN IMMEDIATE``). WAL mode lets readers in other
processes (the service, ``shoplens search``) go on while an indexing run
writes; ``busy_timeout`` waits out other writers (other parts share the file)
instead of failing.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shoplens.db import write_transaction
from shoplens.indexer.catalog.schema import create_schema
from shoplens.indexer.catalog.text import sync as sync_text


class CatalogConnection:
    """An open catalog database (schema created or brought up to date)."""

    def __init__(self, db_path: Path, *, timeout_s: float) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            db_path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        # FULL: an acknowledged write (a PUT, a committed batch) survives power loss.
        self._conn.execute("PRAGMA synchronous = FULL")
        self._text_index = create_schema(self._conn)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def locked(self) -> Iterator[sqlite3.Connection]:
        """The connection to itself, for statements that need no transaction."""
        with self._lock:
            yield self._conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent read view (one deferred transaction)."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield self._conn
            finally:
                self._conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``): all or nothing.

        Before it commits, the word index takes in the products it changed
        (:func:`.text.sync`), so a committed edit is searchable by its words.
        """
        with write_transaction(self._conn, self._lock) as c:
            yield c
            if self._text_index:
                sync_text(c)
