"""The database layer (shoplens.db) on both engines: SQLite files and a real PostgreSQL."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from shoplens.config import Settings
from shoplens.db import Database
from shoplens.db.dialect import pg_ddl, pg_query
from shoplens.db.migrations import Migration, migrate, status
from shoplens.db.notify import Listener, notify

SCHEMA = """
CREATE TABLE IF NOT EXISTS things (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    at REAL,
    blob BLOB,
    big INTEGER
);
CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY, v TEXT NOT NULL) WITHOUT ROWID;
"""
MIGRATIONS = [
    Migration(1, "things", SCHEMA),
    Migration(2, "things.extra", lambda db, c: db.add_column(c, "things", "extra", "INTEGER")),
]


def _target(db_target: str | None, tmp_path: Path) -> Path | str:
    return db_target if db_target is not None else tmp_path / "t.db"


def test_sql_written_once_runs_on_both(db_target: str | None, tmp_path: Path) -> None:
    db = Database(_target(db_target, tmp_path), name="t")
    assert migrate(db, "t", MIGRATIONS) == ["t:1 things", "t:2 things.extra"]
    with db.transaction() as c:
        row = c.execute(
            "INSERT INTO things(name, at, blob, big) VALUES (?, ?, ?, ?) RETURNING id",
            ("50% off", 1_765_000_000.25, b"\x00\xff", 2**40),
        ).fetchone()
        assert row[0] == row["id"] == 1
        for v in ("1", "2"):
            c.execute(
                "INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v",
                ("seq", v),
            )
        c.executemany(
            "INSERT INTO kv(k, v) VALUES (?, ?) ON CONFLICT DO NOTHING", [("a", "1"), ("seq", "x")]
        )
    with db.read() as c:
        got = c.execute("SELECT * FROM things WHERE name LIKE '%\\%%' ESCAPE '\\'").fetchone()
        pairs = [tuple(r) for r in c.execute("SELECT k, v FROM kv ORDER BY k")]
    # Full precision of 8-byte reals and 64-bit integers on both engines.
    assert dict(got) == {
        "id": 1,
        "name": "50% off",
        "at": 1_765_000_000.25,
        "blob": b"\x00\xff",
        "big": 2**40,
        "extra": None,
    }
    assert pairs == [("a", "1"), ("seq", "2")]
    db.close()


def test_failed_transaction_leaves_nothing(db_target: str | None, tmp_path: Path) -> None:
    db = Database(_target(db_target, tmp_path), name="t")
    migrate(db, "t", MIGRATIONS)
    with pytest.raises(RuntimeError), db.transaction() as c:
        c.execute("INSERT INTO kv(k, v) VALUES ('gone', '1')")
        raise RuntimeError("half-way")
    with db.locked() as c:
        assert c.execute("SELECT COUNT(*) FROM kv").fetchone()[0] == 0
    db.close()


def test_writers_of_a_store_are_serialised_across_connections(
    db_target: str | None, tmp_path: Path
) -> None:
    """Two processes' read-modify-write of one counter never lose an increment."""
    target = _target(db_target, tmp_path)
    first = Database(target, name="t")
    migrate(first, "t", MIGRATIONS)
    with first.transaction() as c:
        c.execute("INSERT INTO kv(k, v) VALUES ('n', '0')")
    second = Database(target, name="t")

    def bump(db: Database) -> None:
        for _ in range(25):
            with db.transaction() as c:
                n = int(c.execute("SELECT v FROM kv WHERE k = 'n'").fetchone()[0])
                time.sleep(0.001)  # widen the window a lost update needs
                c.execute("UPDATE kv SET v = ? WHERE k = 'n'", (str(n + 1),))

    threads = [threading.Thread(target=bump, args=(db,)) for db in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with first.locked() as c:
        assert c.execute("SELECT v FROM kv WHERE k = 'n'").fetchone()[0] == "50"
    first.close()
    second.close()


def test_migrations_apply_once_and_keep_an_unversioned_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(path, name="t")
    with old.transaction() as c:  # a file made before versioning: tables, no record
        old.run_script(c, SCHEMA)
        c.execute("INSERT INTO kv(k, v) VALUES ('kept', 'yes')")
    old.close()
    db = Database(path, name="t")
    assert migrate(db, "t", MIGRATIONS) == ["t:1 things", "t:2 things.extra"]
    assert migrate(db, "t", MIGRATIONS) == []
    assert status(db) == {"t": 2}
    with db.locked() as c:
        assert c.execute("SELECT v FROM kv WHERE k = 'kept'").fetchone()[0] == "yes"
        assert "extra" in db.columns(c, "things")
    with pytest.raises(ValueError, match="numbered"):
        migrate(db, "t", [MIGRATIONS[1]])
    db.close()


def _await_listening(listener: Listener) -> None:
    """Wait (at most 10 s) until ``listener`` has its LISTEN on."""
    deadline = time.monotonic() + 10
    while not listener.listening and time.monotonic() < deadline:
        time.sleep(0.02)
    assert listener.listening


def test_notification_wakes_a_listener_at_once(pg_url: str) -> None:
    db = Database(pg_url, name="t")
    woke = threading.Event()
    listener = Listener(pg_url, ["changes"], woke.set, poll_s=10.0)
    listener.start()
    try:
        _await_listening(listener)
        woke.clear()
        started = time.monotonic()
        with db.transaction() as c:
            notify(c, db.is_postgres, "changes")
        assert woke.wait(5.0)
        # Far sooner than the 10 s poll: the NOTIFY did it.
        assert time.monotonic() - started < 2.0
    finally:
        listener.stop(0.5)
        db.close()


def test_listener_polls_when_the_database_is_unreachable() -> None:
    calls: list[float] = []
    listener = Listener(
        "postgresql://nobody@127.0.0.1:1/none", ["changes"], lambda: calls.append(1), poll_s=0.05
    )
    listener.start()
    time.sleep(0.6)
    listener.stop(0.5)
    assert len(calls) >= 3
    assert not listener.listening


def test_dialect_translation() -> None:
    assert pg_query("SELECT '?', \"a?\" FROM t WHERE x = ? AND y LIKE 'a%'") == (
        "SELECT '?', \"a?\" FROM t WHERE x = %s AND y LIKE 'a%%'"
    )
    ddl = pg_ddl(
        "CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, r REAL, b BLOB) WITHOUT ROWID"
    )
    assert ddl == (
        "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "r DOUBLE PRECISION, b BYTEA)"
    )


def test_database_url_must_be_postgres(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(data_dir=tmp_path, database_url=SecretStr("mysql://x@y/z"))
    settings = Settings(data_dir=tmp_path, database_url=SecretStr("postgresql://u:secret@h/db"))
    assert settings.database(settings.db_path) == "postgresql://u:secret@h/db"
    assert "secret" not in repr(settings)
    assert Settings(data_dir=tmp_path).database(tmp_path / "x.db") == tmp_path / "x.db"


def test_a_listener_without_its_own_polling_calls_back_on_notifications_only(
    pg_url: str,
) -> None:
    """The service polls on its own: its listener must not poll the database again."""
    db = Database(pg_url, name="t")
    calls: list[float] = []
    listener = Listener(
        pg_url, ["changes"], lambda: calls.append(1), poll_s=0.05, call_on_poll=False
    )
    listener.start()
    try:
        _await_listening(listener)
        time.sleep(0.5)  # ten poll periods
        assert len(calls) == 1  # the catch-up once LISTEN is on, nothing per period
        with db.transaction() as c:
            notify(c, db.is_postgres, "changes")
        deadline = time.monotonic() + 5
        while len(calls) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(calls) == 2
    finally:
        listener.stop(0.5)
        db.close()
