"""Versioned schema migrations, per store, on both engines.

Each store (``catalog``, ``jobs``, ``ar``, ``feedback``) lists its migrations in
order; :func:`migrate` applies the ones a database has not had yet, each in its
own write transaction, and records it in ``schema_migrations``. Migrations only
add (tables, columns, indexes), so replicas of the previous release keep
working on an upgraded database: run ``shoplens db upgrade`` first, then roll
the replicas. Version 1 of every store is written with ``IF NOT EXISTS``, so a
SQLite file made before versioning takes it as a no-op.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from shoplens.db.database import Conn, Database, lock_key

_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    component TEXT NOT NULL,
    version INTEGER NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    PRIMARY KEY (component, version)
)
"""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    # A schema script in SQLite's types, or a function for what a script cannot say.
    apply: str | Callable[[Database, Conn], object]


def _ensure_table(db: Database) -> None:
    # Looked at first: a write transaction at every open would wait for (or,
    # past the lock timeout, fail on) a long write another process is making.
    with db.locked() as c:
        if "schema_migrations" in db.tables(c):
            return
    with db.transaction() as c:
        db.run_script(c, _TABLE)


def applied(db: Database, component: str) -> int:
    """The highest version of ``component`` this database has (0: none)."""
    _ensure_table(db)
    with db.locked() as c:
        row = c.execute(
            "SELECT MAX(version) FROM schema_migrations WHERE component = ?", (component,)
        ).fetchone()
    return int(row[0] or 0)


def pending(db: Database, component: str, migrations: Sequence[Migration]) -> list[Migration]:
    have = applied(db, component)
    return [m for m in migrations if m.version > have]


def migrate(db: Database, component: str, migrations: Sequence[Migration]) -> list[str]:
    """Apply what is missing; the ``component:version name`` of each applied."""
    _check_order(component, migrations)
    done: list[str] = []
    if not pending(db, component, migrations):
        return done
    for migration in migrations:
        with db.transaction() as c:
            if db.is_postgres:
                # Two replicas starting at once: the second waits, then sees it done.
                c.execute("SELECT pg_advisory_xact_lock(?)", (lock_key("shoplens:migrations"),))
            row = c.execute(
                "SELECT 1 FROM schema_migrations WHERE component = ? AND version = ?",
                (component, migration.version),
            ).fetchone()
            if row is not None:
                continue
            if isinstance(migration.apply, str):
                db.run_script(c, migration.apply)
            else:
                migration.apply(db, c)
            c.execute(
                "INSERT INTO schema_migrations(component, version, name, applied_at) "
                "VALUES (?, ?, ?, ?)",
                (component, migration.version, migration.name, time.time()),
            )
        done.append(f"{component}:{migration.version} {migration.name}")
    return done


def upgrade(target: Path | str, component: str, migrations: Sequence[Migration]) -> list[str]:
    """Open ``target``, apply ``component``'s pending migrations, close; what was applied
    (a store's part of ``shoplens db upgrade``)."""
    db = Database(target, name=component)
    try:
        return migrate(db, component, migrations)
    finally:
        db.close()


def status(db: Database) -> dict[str, int]:
    """Every component's applied version."""
    _ensure_table(db)
    with db.locked() as c:
        rows = c.execute(
            "SELECT component, MAX(version) FROM schema_migrations GROUP BY component"
        ).fetchall()
    return {str(r[0]): int(r[1]) for r in rows}


def _check_order(component: str, migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{component} migrations must be numbered 1..n in order: {versions}")
