"""Which snapshot is published: the pointer every reader follows.

SQLite (the embedded default): the file ``snapshots/CURRENT``, replaced
atomically (write, fsync, rename) after the snapshot directory itself was
fsynced and renamed into place.

PostgreSQL (``SHOPLENS_DATABASE_URL``, replicas sharing ``data_dir``): the row
``idx_meta['current_snapshot']`` of the catalog, written in one transaction
that also NOTIFYs the catalog channel, so every replica swaps the new snapshot
in at once (:mod:`shoplens.db.notify`). The directory is on the shared storage
and complete (fsynced, renamed) before the row commits, so no replica can
follow the pointer to a half-written snapshot. No CURRENT file is written
there: one pointer, in the database every replica reads.

Callers that hold a catalog store pass it (the live index polls through its
own connection); otherwise one is opened for the call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from shoplens.config import Settings
from shoplens.files.atomic import fsync_dir, write_atomic

CURRENT = "CURRENT"


class SnapshotPointer(Protocol):
    """What the pointer needs of the catalog store on PostgreSQL."""

    def snapshot_pointer(self) -> str | None: ...

    def publish_snapshot(self, snapshot_id: str) -> None: ...


def _file(settings: Settings) -> Path:
    return settings.snapshots_dir / CURRENT


def current_id(settings: Settings, store: SnapshotPointer | None = None) -> str | None:
    """The published snapshot's id, or None when none was published yet."""
    if settings.database_url is None:
        try:
            text = _file(settings).read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        return text or None
    if store is not None:
        return store.snapshot_pointer()
    from shoplens.indexer.catalog.store import CatalogStore

    with CatalogStore(settings.database(settings.db_path)) as opened:
        return opened.snapshot_pointer()


def publish(settings: Settings, snapshot_id: str, store: SnapshotPointer | None = None) -> None:
    """Point readers at ``snapshot_id`` (its directory is complete and durable)."""
    if settings.database_url is None:
        write_atomic(_file(settings), (snapshot_id + "\n").encode())
        fsync_dir(settings.snapshots_dir)
        return
    if store is not None:
        store.publish_snapshot(snapshot_id)
        return
    from shoplens.indexer.catalog.store import CatalogStore

    with CatalogStore(settings.database(settings.db_path)) as opened:
        opened.publish_snapshot(snapshot_id)
