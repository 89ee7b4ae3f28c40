"""One store's connection: a SQLite file, or a PostgreSQL database (psycopg 3).

One connection per store object, shared by the threads of a process behind one
lock, used three ways: a plain locked statement, a consistent read view, or a
write transaction. The write transaction serialises the store's writers the
same way on both engines: SQLite's ``BEGIN IMMEDIATE`` takes the file's write
lock; on PostgreSQL a transaction-level advisory lock keyed by the store's name
does it across every replica. Read-modify-write code (the catalog's change
sequence) therefore stays correct with any number of processes.

Rows answer ``row[0]`` and ``row["name"]`` on both engines.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, Protocol

from shoplens.db.dialect import pg_ddl, pg_query, split_sqlite_script

Kind = Literal["sqlite", "postgres"]


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class Conn(Protocol):
    """What a store's SQL runs on (``sqlite3.Connection`` satisfies it as is)."""

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Cursor: ...


def is_postgres_url(target: object) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for a name."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class Row(tuple[Any, ...]):
    """A PostgreSQL row that also answers by column name, like ``sqlite3.Row``."""

    _names: dict[str, int]

    def __new__(cls, values: Sequence[Any], names: dict[str, int]) -> Row:
        row = super().__new__(cls, values)
        row._names = names
        return row

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._names[key])
        return tuple.__getitem__(self, key)

    def keys(self) -> list[str]:
        return list(self._names)


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {col.name: i for i, col in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


class PgConnection:
    """psycopg's connection behind the sqlite3-like calls the stores make."""

    def __init__(self, url: str, timeout_s: float) -> None:
        import psycopg

        self._psycopg = psycopg
        self._url = url
        self._timeout_s = timeout_s
        self._conn = self._connect()

    def _connect(self) -> Any:
        conn = self._psycopg.connect(
            self._url,
            autocommit=True,
            row_factory=_row_factory,
            connect_timeout=max(1, int(self._timeout_s)),
        )
        # A statement stuck behind a lock fails after the store's timeout, as
        # SQLite's busy_timeout does, instead of hanging a request forever.
        conn.execute(f"SET lock_timeout = {int(self._timeout_s * 1000)}")
        return conn

    def ensure_open(self) -> None:
        """Reconnect after the server closed the connection (a restart, a failover)."""
        if self._conn.closed or self._conn.broken:
            self._conn = self._connect()

    @property
    def raw(self) -> Any:
        return self._conn

    def execute(self, sql: str, parameters: Any = (), /) -> Any:
        return self._conn.execute(pg_query(sql), parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Any:
        cur = self._conn.cursor()
        cur.executemany(pg_query(sql), list(parameters))
        return cur

    def close(self) -> None:
        self._conn.close()


class Database:
    """An open store database; ``name`` keys its write lock on PostgreSQL."""

    def __init__(
        self,
        target: Path | str,
        *,
        name: str,
        timeout_s: float = 30.0,
        synchronous: str = "FULL",
    ) -> None:
        self.name = name
        self._lock = threading.RLock()
        self._key = lock_key(f"shoplens:{name}")
        self.kind: Kind
        if is_postgres_url(target):
            self.kind = "postgres"
            self._pg: PgConnection | None = PgConnection(str(target), timeout_s)
            self._conn: Any = self._pg
        else:
            self.kind = "sqlite"
            self._pg = None
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            # WAL: readers in other processes go on while one writes.
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged write survives power loss.
            conn.execute(f"PRAGMA synchronous = {synchronous}")
            self._conn = conn

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _ready(self) -> Conn:
        if self._pg is not None:
            self._pg.ensure_open()
        conn: Conn = self._conn
        return conn

    @contextmanager
    def locked(self) -> Iterator[Conn]:
        """The connection to itself, for statements that need no transaction."""
        with self._lock:
            yield self._ready()

    @contextmanager
    def read(self) -> Iterator[Conn]:
        """A consistent read view (one transaction that sees one snapshot)."""
        with self._lock:
            conn = self._ready()
            begin = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY" if self._pg else "BEGIN"
            conn.execute(begin)
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    @contextmanager
    def transaction(self) -> Iterator[Conn]:
        """One write transaction, all or nothing, writers of this store serialised."""
        with self._lock:
            conn = self._ready()
            if self._pg is not None:
                conn.execute("BEGIN")
                try:
                    conn.execute("SELECT pg_advisory_xact_lock(?)", (self._key,))
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            else:
                conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def run_script(self, conn: Conn, script: str) -> None:
        """A schema script (SQLite types) inside the caller's transaction."""
        if self._pg is not None:
            self._pg.raw.execute(pg_ddl(script))
            return
        for statement in split_sqlite_script(script):
            conn.execute(statement)

    def columns(self, conn: Conn, table: str) -> set[str]:
        if self._pg is not None:
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = current_schema() AND table_name = ?",
                (table,),
            ).fetchall()
            return {r[0] for r in rows}
        return {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}

    def add_column(self, conn: Conn, table: str, column: str, decl: str) -> bool:
        """Add a column an older database lacks; whether it was added."""
        if column in self.columns(conn, table):
            return False
        if self._pg is not None:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {pg_ddl(decl)}")
        else:
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
        return True

    def tables(self, conn: Conn) -> set[str]:
        if self._pg is not None:
            rows = conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        else:
            rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        return {r[0] for r in rows}
