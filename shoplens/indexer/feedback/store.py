"""The search log, feedback events and kept shopper photos: ``data_dir/feedback.db``,
or the shared PostgreSQL database (``SHOPLENS_DATABASE_URL``), through
:class:`shoplens.db.Database` (store name ``feedback``).

Tables (versioned migrations of component ``feedback``, run on open; a file
from before versioning took version 1 as ``PRAGMA user_version = 1``, and
its ``IF NOT EXISTS`` script is a no-op there):

- ``searches``: one row per search answer while feedback on it is accepted
  (``search_id``, time, the product ids it showed; with learning on also the
  query vector and the model that made it);
- ``events``: at most one ``click``, ``confirm`` and ``purchase`` per search;
- ``shopper_photos``: a confirmed search photo kept as a photo of a product
  (``pending`` review, ``approved``, or ``rejected``), its raw model vector,
  and when a ``shoplens learn`` used it.

A search row and its events are deleted when the feedback window closes; a
shopper photo when its retention ends, or when an admin deletes it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.db import Database
from shoplens.db.migrations import Migration, migrate

COMPONENT = "feedback"
SCHEMA = """
CREATE TABLE IF NOT EXISTS searches (
    search_id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    shown TEXT NOT NULL,
    model TEXT,
    vector BLOB
);
CREATE INDEX IF NOT EXISTS searches_created ON searches (created_at);
CREATE TABLE IF NOT EXISTS events (
    search_id TEXT NOT NULL,
    event TEXT NOT NULL,
    product_id TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (search_id, event)
);
CREATE INDEX IF NOT EXISTS events_at ON events (at);
CREATE TABLE IF NOT EXISTS shopper_photos (
    photo_id TEXT PRIMARY KEY,
    search_id TEXT NOT NULL UNIQUE,
    product_id TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    upload_sha TEXT,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    learnt_at REAL,
    snapshot_id TEXT
);
CREATE INDEX IF NOT EXISTS shopper_photos_product ON shopper_photos (product_id, created_at);
CREATE INDEX IF NOT EXISTS shopper_photos_sha ON shopper_photos (upload_sha);
CREATE INDEX IF NOT EXISTS shopper_photos_state ON shopper_photos (state, created_at);
"""
MIGRATIONS = (Migration(1, "searches, events, shopper photos", SCHEMA),)


PHOTO_STATES = ("pending", "approved", "rejected")
_PHOTO_COLUMNS = "photo_id, search_id, product_id, event, state, created_at, learnt_at, snapshot_id"


def new_search_id(now: float) -> str:
    """``s<unix seconds, hex>-<random>``: the age is readable from the id itself, so
    a search whose row was already swept still answers 410 (too old), not 404."""
    return f"s{int(now):x}-{secrets.token_urlsafe(12)}"


def search_id_time(search_id: str) -> float | None:
    """The creation time written in a search id; None when it is not one of ours."""
    head, sep, tail = search_id.partition("-")
    if not sep or len(head) < 2 or head[0] != "s" or not tail or len(search_id) > 64:
        return None
    try:
        return float(int(head[1:], 16))
    except ValueError:
        return None


def new_photo_id() -> str:
    return "p" + secrets.token_hex(8)


@dataclass(frozen=True)
class NewSearch:
    """A search row waiting to be written (``FeedbackStore.record_searches``)."""

    search_id: str
    created_at: float
    shown: list[str]
    model: str | None = None
    vector: NDArray[np.float32] | None = None


@dataclass(frozen=True)
class SearchRow:
    search_id: str
    created_at: float
    shown: list[str]
    model: str | None
    vector: NDArray[np.float32] | None


@dataclass(frozen=True)
class PhotoRow:
    photo_id: str
    search_id: str
    product_id: str
    event: str
    state: str
    created_at: float
    learnt_at: float | None
    snapshot_id: str | None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _vec(blob: bytes | None) -> NDArray[np.float32] | None:
    return None if blob is None else np.frombuffer(blob, dtype=np.float32).copy()


def _blob(vector: NDArray[np.float32] | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, np.float32).tobytes()


class FeedbackStore:
    """The feedback database (thread-safe); ``target``: a SQLite file or a PostgreSQL URL."""

    def __init__(self, target: Path | str, *, timeout_s: float = 30.0) -> None:
        # synchronous=NORMAL on SQLite: a search row lost in a power cut only
        # means that search cannot get feedback, not worth an fsync per batch.
        self.db = Database(target, name=COMPONENT, timeout_s=timeout_s, synchronous="NORMAL")
        try:
            migrate(self.db, COMPONENT, MIGRATIONS)
        except BaseException:
            self.db.close()
            raise
        self._tx = self.db.transaction
        self._read = self.db.locked

    def close(self) -> None:
        self.db.close()

    # -- the search log ---------------------------------------------------------

    def record_searches(self, rows: Iterable[NewSearch]) -> None:
        """Write search rows, all in one transaction (one commit for a whole batch)."""
        params = [
            (r.search_id, r.created_at, json.dumps(r.shown), r.model, _blob(r.vector)) for r in rows
        ]
        if not params:
            return
        with self._tx() as c:
            c.executemany(
                "INSERT INTO searches (search_id, created_at, shown, model, vector) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (search_id) DO NOTHING",
                params,
            )

    def record_search(
        self,
        search_id: str,
        created_at: float,
        shown: list[str],
        *,
        model: str | None = None,
        vector: NDArray[np.float32] | None = None,
    ) -> None:
        self.record_searches([NewSearch(search_id, created_at, shown, model, vector)])

    def search(self, search_id: str) -> SearchRow | None:
        with self._read() as c:
            row = c.execute(
                "SELECT search_id, created_at, shown, model, vector FROM searches "
                "WHERE search_id = ?",
                (search_id,),
            ).fetchone()
        if row is None:
            return None
        return SearchRow(row[0], float(row[1]), json.loads(row[2]), row[3], _vec(row[4]))

    def add_event(self, search_id: str, event: str, product_id: str, at: float) -> str | None:
        """Record one event; None when stored, else why not (``"duplicate"`` for the
        same event twice, ``"other_product"`` for a confirm and a purchase that name
        different products)."""
        with self._tx() as c:
            rows = c.execute(
                "SELECT event, product_id FROM events WHERE search_id = ?", (search_id,)
            ).fetchall()
            for ev, pid in rows:
                if ev == event:
                    return "duplicate"
                if ev != "click" and event != "click" and pid != product_id:
                    return "other_product"
            c.execute(
                "INSERT INTO events (search_id, event, product_id, at) VALUES (?, ?, ?, ?)",
                (search_id, event, product_id, at),
            )
        return None

    def unkept_confirmations(self, since: float) -> list[tuple[str, str, str, float]]:
        """``(search_id, event, product_id, at)`` of the confirmations and purchases
        recorded since ``since`` whose search has no shopper photo yet: what a
        replica holding those searches' photos still has to keep."""
        with self._read() as c:
            rows = c.execute(
                "SELECT e.search_id, e.event, e.product_id, e.at FROM events e "
                "WHERE e.event != 'click' AND e.at >= ? AND NOT EXISTS "
                "(SELECT 1 FROM shopper_photos p WHERE p.search_id = e.search_id) "
                "ORDER BY e.at",
                (since,),
            ).fetchall()
        return [(str(r[0]), str(r[1]), str(r[2]), float(r[3])) for r in rows]

    # -- shopper photos ----------------------------------------------------------

    def add_photo(
        self,
        photo_id: str,
        search: SearchRow,
        product_id: str,
        event: str,
        state: str,
        at: float,
        upload_sha: str,
    ) -> None:
        if search.vector is None or search.model is None:
            raise ValueError("a shopper photo needs the search's vector")
        with self._tx() as c:
            c.execute(
                "INSERT INTO shopper_photos (photo_id, search_id, product_id, event, state, "
                "created_at, upload_sha, model, vector) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    photo_id,
                    search.search_id,
                    product_id,
                    event,
                    state,
                    at,
                    upload_sha,
                    search.model,
                    np.ascontiguousarray(search.vector, np.float32).tobytes(),
                ),
            )

    def photos_with_sha(self, upload_sha: str) -> int:
        with self._read() as c:
            row = c.execute(
                "SELECT COUNT(*) FROM shopper_photos WHERE upload_sha = ?",
                (upload_sha,),
            ).fetchone()
        return int(row[0])

    def product_photos_since(self, product_id: str, since: float) -> int:
        with self._read() as c:
            row = c.execute(
                "SELECT COUNT(*) FROM shopper_photos WHERE product_id = ? AND created_at >= ?",
                (product_id, since),
            ).fetchone()
        return int(row[0])

    def product_vectors(self, product_id: str, model: str) -> NDArray[np.float32]:
        """Raw vectors of the product's kept (not rejected) photos made by ``model``."""
        with self._read() as c:
            rows = c.execute(
                "SELECT vector FROM shopper_photos WHERE product_id = ? AND model = ? "
                "AND state != 'rejected'",
                (product_id, model),
            ).fetchall()
        if not rows:
            return np.zeros((0, 0), np.float32)
        return np.stack([np.frombuffer(r[0], np.float32) for r in rows])

    def learnable(self, model: str) -> list[tuple[str, str, NDArray[np.float32]]]:
        """``(photo_id, product_id, raw vector)`` of every approved photo made by ``model``."""
        with self._read() as c:
            rows = c.execute(
                "SELECT photo_id, product_id, vector FROM shopper_photos "
                "WHERE state = 'approved' AND model = ? ORDER BY created_at",
                (model,),
            ).fetchall()
        return [(r[0], r[1], np.frombuffer(r[2], np.float32).copy()) for r in rows]

    def mark_learnt(self, photo_ids: list[str], snapshot_id: str, at: float) -> None:
        """The photos ``snapshot_id`` learnt from; every other photo is marked as not
        learnt (an outlier now, or approved since): "learnt" is the published state."""
        with self._tx() as c:
            c.execute("UPDATE shopper_photos SET learnt_at = NULL, snapshot_id = NULL")
            c.executemany(
                "UPDATE shopper_photos SET learnt_at = ?, snapshot_id = ? WHERE photo_id = ?",
                [(at, snapshot_id, p) for p in photo_ids],
            )

    def photos(self, state: str | None, limit: int, offset: int) -> tuple[list[PhotoRow], int]:
        where, args = ("WHERE state = ?", (state,)) if state else ("", ())
        with self._read() as c:
            total = int(
                c.execute(f"SELECT COUNT(*) FROM shopper_photos {where}", args).fetchone()[0]
            )
            rows = c.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM shopper_photos {where} "
                "ORDER BY created_at DESC, photo_id LIMIT ? OFFSET ?",
                (*args, limit, offset),
            ).fetchall()
        return [PhotoRow(*r) for r in rows], total

    def photo(self, photo_id: str) -> PhotoRow | None:
        with self._read() as c:
            row = c.execute(
                f"SELECT {_PHOTO_COLUMNS} FROM shopper_photos WHERE photo_id = ?", (photo_id,)
            ).fetchone()
        return None if row is None else PhotoRow(*row)

    def set_state(self, photo_id: str, state: str) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE shopper_photos SET state = ? WHERE photo_id = ?", (state, photo_id)
            )
        return cur.rowcount > 0

    def delete_photo(self, photo_id: str) -> bool:
        with self._tx() as c:
            cur = c.execute("DELETE FROM shopper_photos WHERE photo_id = ?", (photo_id,))
        return cur.rowcount > 0

    # -- housekeeping and numbers ------------------------------------------------------

    def sweep(self, searches_before: float, photos_before: float) -> list[str]:
        """Forget searches (and their events) older than ``searches_before`` and
        shopper photos older than ``photos_before``; the swept photos' ids."""
        with self._tx() as c:
            c.execute("DELETE FROM searches WHERE created_at < ?", (searches_before,))
            c.execute("DELETE FROM events WHERE at < ?", (searches_before,))
            gone = [
                r[0]
                for r in c.execute(
                    "SELECT photo_id FROM shopper_photos WHERE created_at < ?", (photos_before,)
                )
            ]
            c.execute("DELETE FROM shopper_photos WHERE created_at < ?", (photos_before,))
        return gone

    def live_search_ids(self, ids: list[str]) -> set[str]:
        with self._read() as c:
            found: set[str] = set()
            for s in range(0, len(ids), 500):
                part = ids[s : s + 500]
                marks = ",".join("?" * len(part))
                found.update(
                    r[0]
                    for r in c.execute(
                        f"SELECT search_id FROM searches WHERE search_id IN ({marks})", part
                    )
                )
        return found

    def stats(self, since: float) -> dict[str, Any]:
        """Searches and events since ``since`` (the feedback window), photos by state."""
        with self._read() as c:
            searches = int(
                c.execute(
                    "SELECT COUNT(*) FROM searches WHERE created_at >= ?", (since,)
                ).fetchone()[0]
            )
            events = dict.fromkeys(("click", "confirm", "purchase"), 0)
            for ev, n in c.execute(
                "SELECT e.event, COUNT(*) FROM events e JOIN searches s USING (search_id) "
                "WHERE s.created_at >= ? GROUP BY e.event",
                (since,),
            ):
                events[str(ev)] = int(n)
            photos = dict.fromkeys(PHOTO_STATES, 0)
            for st, n in c.execute("SELECT state, COUNT(*) FROM shopper_photos GROUP BY state"):
                photos[str(st)] = int(n)
            learnt = int(
                c.execute(
                    "SELECT COUNT(*) FROM shopper_photos WHERE learnt_at IS NOT NULL "
                    "AND state = 'approved'"
                ).fetchone()[0]
            )
        return {
            "searches": searches,
            "events": events,
            "click_through_rate": round(events["click"] / searches, 4) if searches else None,
            "confirm_rate": round(events["confirm"] / searches, 4) if searches else None,
            "photos": photos,
            "learnt": learnt,
        }
