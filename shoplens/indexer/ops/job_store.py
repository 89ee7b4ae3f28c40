"""The ``jobs`` table: one row per admin job (``reindex`` from a manifest, or ``learn``
from shoppers' photos), in the store database (``settings.database``: the data
dir's ``catalog.db``, or the shared PostgreSQL database).

A row outlives the process running its job, which is what lets a restarted
service resume it (:meth:`JobStore.requeue_unfinished`), lets another replica
take over a job whose runner died (:meth:`JobStore.claim` on a ``running`` row
whose ``heartbeat_at`` went stale) and lets ``shoplens status`` read the latest
job without a service (:func:`latest_job`). One job is queued or running at a
time: :meth:`JobStore.create` refuses a second (its check and its insert are
one write transaction, serialised across replicas on PostgreSQL).
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoplens.config import Settings
from shoplens.db import Conn, Database
from shoplens.db.migrations import Migration, migrate
from shoplens.errors import Conflict

STATES = ("queued", "running", "succeeded", "failed", "interrupted")
# Rows a starting runner picks up again.
UNFINISHED = ("queued", "running", "interrupted")
# Rows that make a new submission wait (one job at a time).
ACTIVE = ("queued", "running")
KINDS = ("reindex", "learn")
COMPONENT = "jobs"

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    manifest TEXT NOT NULL,
    prune INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    progress TEXT NOT NULL DEFAULT '{}',
    result TEXT,
    error TEXT,
    snapshot_id TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
"""


def _add_kind(db: Database, c: Conn) -> None:
    # Tables made before learn jobs existed get the column (every old row a re-index).
    db.add_column(c, "jobs", "kind", "TEXT NOT NULL DEFAULT 'reindex'")


def _add_owner(db: Database, c: Conn) -> None:
    # Which replica runs the job, and when it last said it is still alive
    # (unix seconds): a running row whose heartbeat went stale is taken over.
    db.add_column(c, "jobs", "owner", "TEXT")
    db.add_column(c, "jobs", "heartbeat_at", "REAL")


MIGRATIONS = (
    Migration(1, "jobs table", SCHEMA),
    Migration(2, "job kind", _add_kind),
    Migration(3, "job owner and heartbeat", _add_owner),
)

_COLUMNS = (
    "job_id, state, manifest, prune, created_at, started_at, finished_at, attempts, "
    "progress, result, error, snapshot_id, kind, owner, heartbeat_at"
)
_IN_UNFINISHED = "('queued', 'running', 'interrupted')"
_IN_ACTIVE = "('queued', 'running')"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """Sortable by creation time."""
    return datetime.now(UTC).strftime("job-%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(3)


def empty_progress() -> dict[str, Any]:
    return {"done": 0, "total": None, "rate_per_s": None, "eta_s": None, "phase": "queued"}


class JobStore:
    """The ``jobs`` table (thread-safe); ``target``: a SQLite file or a PostgreSQL URL."""

    def __init__(self, target: Path | str, *, timeout_s: float = 30.0) -> None:
        self.db = Database(target, name=COMPONENT, timeout_s=timeout_s)
        try:
            migrate(self.db, COMPONENT, MIGRATIONS)
        except BaseException:
            self.db.close()
            raise

    @property
    def shared(self) -> bool:
        """True when other replicas may run jobs from this table (PostgreSQL)."""
        return self.db.is_postgres

    def close(self) -> None:
        self.db.close()

    def check_idle(self) -> None:
        """:class:`Conflict` while a job is queued or running."""
        with self.db.locked() as c:
            _raise_if_active(c)

    def create(self, manifest: str, prune: bool, kind: str = "reindex") -> str:
        """A new ``queued`` job; :class:`Conflict` while another is queued or running."""
        with self.db.transaction() as c:
            _raise_if_active(c)
            job_id = new_job_id()
            c.execute(
                "INSERT INTO jobs (job_id, state, manifest, prune, created_at, progress, kind) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, manifest, int(prune), _now(), json.dumps(empty_progress()), kind),
            )
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self.db.locked() as c:
            row = c.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else _row_dict(row)

    def latest(self) -> dict[str, Any] | None:
        with self.db.locked() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _row_dict(row)

    def requeue_unfinished(self) -> list[str]:
        """Jobs a previous process left unfinished go back to ``queued``; their ids.

        Shared (PostgreSQL): only ``interrupted`` rows: a ``running`` one may be
        another replica's live job, and is taken over by :meth:`claim` once its
        heartbeat goes stale instead.
        """
        states = "('interrupted')" if self.shared else _IN_UNFINISHED
        with self.db.transaction() as c:
            ids = [
                r[0]
                for r in c.execute(
                    f"SELECT job_id FROM jobs WHERE state IN {states} ORDER BY created_at"
                )
            ]
            c.execute(f"UPDATE jobs SET state = 'queued' WHERE state IN {states}")
        return ids

    def next_queued(self) -> dict[str, Any] | None:
        with self.db.locked() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY created_at LIMIT 1"
            ).fetchone()
        return None if row is None else _row_dict(row)

    def next_claimable(self, stale_before: float | None) -> dict[str, Any] | None:
        """The oldest job a runner may take: queued or interrupted, or (with
        ``stale_before``) running with no heartbeat since then (its owner died)."""
        where, args = _claimable(stale_before)
        with self.db.locked() as c:
            row = c.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE {where} ORDER BY created_at LIMIT 1", args
            ).fetchone()
        return None if row is None else _row_dict(row)

    def claim(self, job_id: str, owner: str, stale_before: float | None) -> dict[str, Any] | None:
        """Mark the job ``running`` for ``owner`` if it is still claimable; the
        updated row, or None when another runner got it first."""
        where, args = _claimable(stale_before)
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), "
                "attempts = attempts + 1, error = NULL, owner = ?, heartbeat_at = ? "
                f"WHERE job_id = ? AND {where}",
                (_now(), owner, time.time(), job_id, *args),
            )
            if cur.rowcount != 1:
                return None
            row = c.execute(f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _row_dict(row)

    def heartbeat(self, job_id: str, owner: str) -> bool:
        """Say ``owner`` still runs the job; False when the row is no longer its own."""
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE jobs SET heartbeat_at = ? WHERE job_id = ? AND owner = ? "
                "AND state = 'running'",
                (time.time(), job_id, owner),
            )
        return cur.rowcount == 1

    def set_progress(self, job_id: str, progress: dict[str, Any], owner: str | None = None) -> None:
        """Persist progress; with ``owner``, only while the row is still its own."""
        mine = "" if owner is None else " AND owner = ?"
        args = (json.dumps(progress), job_id) + (() if owner is None else (owner,))
        with self.db.transaction() as c:
            c.execute(f"UPDATE jobs SET progress = ? WHERE job_id = ?{mine}", args)

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        progress: dict[str, Any],
        result: dict[str, Any] | None = None,
        error: str | None = None,
        snapshot_id: str | None = None,
        owner: str | None = None,
    ) -> bool:
        """Record the outcome; with ``owner``, only while the row is still its own
        (a runner that lost its job to a takeover must not overwrite it). Whether
        the row was written."""
        finished = None if state == "interrupted" else _now()
        mine = "" if owner is None else " AND owner = ?"
        args: tuple[Any, ...] = (
            state,
            finished,
            json.dumps(progress),
            None if result is None else json.dumps(result),
            error,
            snapshot_id,
            job_id,
        )
        with self.db.transaction() as c:
            cur = c.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, progress = ?, result = ?, "
                f"error = ?, snapshot_id = ? WHERE job_id = ?{mine}",
                args if owner is None else (*args, owner),
            )
        return cur.rowcount == 1


def _claimable(stale_before: float | None) -> tuple[str, tuple[float, ...]]:
    """The WHERE clause of a job a runner may take (see :meth:`JobStore.next_claimable`)."""
    if stale_before is None:
        return "state IN ('queued', 'interrupted')", ()
    return (
        "(state IN ('queued', 'interrupted') OR (state = 'running' "
        "AND (heartbeat_at IS NULL OR heartbeat_at < ?)))",
        (stale_before,),
    )


def _raise_if_active(conn: Conn) -> None:
    row = conn.execute(
        f"SELECT job_id, state FROM jobs WHERE state IN {_IN_ACTIVE} ORDER BY created_at LIMIT 1"
    ).fetchone()
    if row is not None:
        raise Conflict(f"job {row[0]} is {row[1]}; one job runs at a time, wait for it to finish")


def _row_dict(row: Any) -> dict[str, Any]:
    (job_id, state, manifest, prune, created, started, finished, attempts) = row[:8]
    progress, result, error, snapshot_id = row[8:12]
    kind = row[12] if len(row) > 12 else "reindex"
    owner = row[13] if len(row) > 13 else None
    heartbeat = row[14] if len(row) > 14 else None
    res: dict[str, Any] = json.loads(result) if result else {}
    return {
        "job_id": job_id,
        "state": state,
        "manifest": manifest,
        "prune": bool(prune),
        "created_at": created,
        "started_at": started,
        "finished_at": finished,
        "attempts": int(attempts),
        "progress": json.loads(progress) if progress else empty_progress(),
        "counts": res.get("counts"),
        "rejects": res.get("rejects", []),
        "rejects_total": int(res.get("rejects_total", 0)),
        "rejects_path": res.get("rejects_path"),
        "seconds": res.get("seconds"),
        "error": error,
        "snapshot_id": snapshot_id,
        "kind": kind,
        "learn": res.get("learn"),
        "owner": owner,
        "heartbeat_at": None if heartbeat is None else float(heartbeat),
    }


def latest_job(settings: Settings) -> dict[str, Any] | None:
    """The most recent job of a data dir (or of the shared database), or None."""
    if settings.database_url is not None:
        store = JobStore(settings.database(settings.db_path), timeout_s=5.0)
        try:
            return store.latest()
        finally:
            store.close()
    if not settings.db_path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        # A table from an older release (read-only here: no migration) lacks the
        # newer columns: read what it has, in order.
        wanted = ", ".join(c for c in _COLUMNS.split(", ") if c in columns)
        row = conn.execute(f"SELECT {wanted} FROM jobs ORDER BY created_at DESC LIMIT 1")
        got = row.fetchone()
    except sqlite3.Error:  # no jobs table: the service never ran a job here
        return None
    finally:
        conn.close()
    return None if got is None else _row_dict(got)
