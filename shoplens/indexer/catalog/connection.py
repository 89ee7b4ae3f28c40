"""The catalog's one connection (:class:`shoplens.db.Database`), and the three ways
the store uses it: a plain locked statement, a consistent read view, or a write
transaction.

The target is a SQLite file (the embedded default; WAL lets readers in other
processes go on while an indexing run writes) or a PostgreSQL URL shared by
every replica. Writers are serialised on both engines (``BEGIN IMMEDIATE``; an
advisory lock on PostgreSQL), so the read-modify-write of the change sequence
stays correct with any number of processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from shoplens.db import Conn, Database
from shoplens.db.notify import CATALOG_CHANNEL, notify
from shoplens.indexer.catalog.schema import create_schema
from shoplens.indexer.catalog.text import sync as sync_text


class CatalogConnection:
    """An open catalog database (schema migrated to the current version)."""

    def __init__(self, target: Path | str, *, timeout_s: float) -> None:
        self.db = Database(target, name="catalog", timeout_s=timeout_s)
        try:
            # What this open applied (``catalog:N name``), for `shoplens db upgrade`.
            self.applied, self._text_index = create_schema(self.db)
        except BaseException:
            self.db.close()
            raise

    @property
    def is_postgres(self) -> bool:
        return self.db.is_postgres

    def close(self) -> None:
        self.db.close()

    def locked(self) -> AbstractContextManager[Conn]:
        """The connection to itself, for statements that need no transaction."""
        return self.db.locked()

    def read(self) -> AbstractContextManager[Conn]:
        """A consistent read view (one transaction that sees one snapshot)."""
        return self.db.read()

    @contextmanager
    def transaction(self, *, changes: bool = False) -> Iterator[Conn]:
        """One write transaction: all or nothing.

        Before it commits, the word index takes in the products it changed
        (:func:`.text.sync`), so a committed edit is searchable by its words.
        ``changes``: it may change what is searched (products, images, the
        published snapshot), so every replica is told at commit
        (:data:`shoplens.db.notify.CATALOG_CHANNEL`; nothing on SQLite, whose
        readers poll).
        """
        with self.db.transaction() as c:
            yield c
            if self._text_index:
                sync_text(self.db, c)
            if changes:
                notify(c, self.db.is_postgres, CATALOG_CHANNEL)
