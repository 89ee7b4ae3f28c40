"""The ``jobs`` table: one row per admin job (``reindex`` from a manifest, or ``learn``
from shoppers' photos), in the data dir's metadata database.

A row outlives the process running its job, which is what lets a restarted
service resume it (:meth:`JobStore.requeue_unfinished`) and lets
``shoplens status`` read the latest job without a service (:func:`latest_job`).
One job is queued or running at a time: :meth:`JobStore.create` refuses a second.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoplens.config import Settings
from shoplens.db import write_transaction
from shoplens.errors import Conflict

STATES = ("queued", "running", "succeeded", "failed", "interrupted")
# Rows a starting runner picks up again.
UNFINISHED = ("queued", "running", "interrupted")
# Rows that make a new submission wait (one job at a time).
ACTIVE = ("queued", "running")

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
KINDS = ("reindex", "learn")
# Tables made before learn jobs existed get the column (every old row a re-index).
_ADD_KIND = "ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'reindex'"

_COLUMNS = (
    "job_id, state, manifest, prune, created_at, started_at, finished_at, attempts, "
    "progress, result, error, snapshot_id, kind"
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_job_id() -> str:
    """Sortable by creation time."""
    return datetime.now(UTC).strftime("job-%Y%m%dT%H%M%S%fZ-") + secrets.token_hex(3)


def empty_progress() -> dict[str, Any]:
    return {"done": 0, "total": None, "rate_per_s": None, "eta_s": None, "phase": "queued"}


class JobStore:
    """The ``jobs`` table (its own table in ``settings.db_path``; thread-safe)."""

    def __init__(self, db_path: Path, *, timeout_s: float = 30.0) -> None:
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            db_path, timeout=timeout_s, isolation_level=None, check_same_thread=False
        )
        self._conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        self._conn.execute("PRAGMA journal_mode = WAL")
        self._conn.executescript(SCHEMA)
        columns = {r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")}
        if "kind" not in columns:
            self._conn.execute(_ADD_KIND)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._conn, self._lock)

    def check_idle(self) -> None:
        """:class:`Conflict` while a job is queued or running."""
        with self._lock:
            _raise_if_active(self._conn)

    def create(self, manifest: str, prune: bool, kind: str = "reindex") -> str:
        """A new ``queued`` job; :class:`Conflict` while another is queued or running."""
        with self._tx() as c:
            _raise_if_active(c)
            job_id = new_job_id()
            c.execute(
                "INSERT INTO jobs (job_id, state, manifest, prune, created_at, progress, kind) "
                "VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                (job_id, manifest, int(prune), _now(), json.dumps(empty_progress()), kind),
            )
        return job_id

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
        return None if row is None else _row_dict(row)

    def latest(self) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs ORDER BY created_at DESC LIMIT 1"
            ).fetchone()
        return None if row is None else _row_dict(row)

    def requeue_unfinished(self) -> list[str]:
        """Jobs a previous process left unfinished go back to ``queued``; their ids."""
        with self._tx() as c:
            ids = [
                r[0]
                for r in c.execute(
                    f"SELECT job_id FROM jobs WHERE state IN {UNFINISHED!r} ORDER BY created_at"
                )
            ]
            c.execute(f"UPDATE jobs SET state = 'queued' WHERE state IN {UNFINISHED!r}")
        return ids

    def next_queued(self) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute(
                f"SELECT {_COLUMNS} FROM jobs WHERE state = 'queued' ORDER BY created_at LIMIT 1"
            ).fetchone()
        return None if row is None else _row_dict(row)

    def mark_running(self, job_id: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = 'running', started_at = COALESCE(started_at, ?), "
                "attempts = attempts + 1, error = NULL WHERE job_id = ?",
                (_now(), job_id),
            )

    def set_progress(self, job_id: str, progress: dict[str, Any]) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET progress = ? WHERE job_id = ?", (json.dumps(progress), job_id)
            )

    def finish(
        self,
        job_id: str,
        state: str,
        *,
        progress: dict[str, Any],
        result: dict[str, Any] | None = None,
        error: str | None = None,
        snapshot_id: str | None = None,
    ) -> None:
        finished = None if state == "interrupted" else _now()
        with self._tx() as c:
            c.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, progress = ?, result = ?, "
                "error = ?, snapshot_id = ? WHERE job_id = ?",
                (
                    state,
                    finished,
                    json.dumps(progress),
                    None if result is None else json.dumps(result),
                    error,
                    snapshot_id,
                    job_id,
                ),
            )


def _raise_if_active(conn: sqlite3.Connection) -> None:
    row = conn.execute(
        f"SELECT job_id, state FROM jobs WHERE state IN {ACTIVE!r} ORDER BY created_at LIMIT 1"
    ).fetchone()
    if row is not None:
        raise Conflict(f"job {row[0]} is {row[1]}; one job runs at a time, wait for it to finish")


def _row_dict(row: tuple[Any, ...]) -> dict[str, Any]:
    (job_id, state, manifest, prune, created, started, finished, attempts) = row[:8]
    progress, result, error, snapshot_id = row[8:12]
    kind = row[12] if len(row) > 12 else "reindex"
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
    }


def latest_job(settings: Settings) -> dict[str, Any] | None:
    """The most recent job of a data dir, or None (no database or no job yet)."""
    if not settings.db_path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{settings.db_path}?mode=ro", uri=True, timeout=5.0)
    except sqlite3.Error:
        return None
    try:
        columns = {r[1] for r in conn.execute("PRAGMA table_info(jobs)")}
        # A table from before learn jobs (read-only here: no migration) has no kind.
        wanted = _COLUMNS if "kind" in columns else _COLUMNS.removesuffix(", kind")
        row = conn.execute(f"SELECT {wanted} FROM jobs ORDER BY created_at DESC LIMIT 1")
        got = row.fetchone()
    except sqlite3.Error:  # no jobs table: the service never ran a job here
        return None
    finally:
        conn.close()
    return None if got is None else _row_dict(got)
