"""The catalog metadata store: the one interface the indexer and the service use.

:class:`CatalogStore` answers for products and images with their change
sequence (:mod:`.rows`, :mod:`.queries`), the embedding and source-stat caches
(:mod:`.embeddings`), the plan/commit of a re-index run (:mod:`.plan`),
word search over product text (:mod:`.text`) and orphan collection
(:mod:`.collect`), on one SQLite file (``settings.db_path``, shared with
other parts that keep their own tables) or the PostgreSQL database every
replica shares (:mod:`.schema`).

It delegates each method to the module that owns that responsibility, passing
its :class:`~.connection.CatalogConnection`; each of those functions takes the
lock, read view or write transaction it needs itself, so the SQL and its
transaction scope stay together. The methods and their signatures are the
contract another backend would implement.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shoplens.db import Conn
from shoplens.indexer.catalog import collect, embeddings, queries, rows, text
from shoplens.indexer.catalog import plan as run_plan
from shoplens.indexer.catalog.collect import EmbeddingStat
from shoplens.indexer.catalog.connection import CatalogConnection
from shoplens.indexer.catalog.plan import CatalogPlan
from shoplens.indexer.catalog.types import NewImage, ProductChange, ProductRecord, StoredImage


class CatalogStore:
    """Thread-safe access to the indexer's tables (one connection, one lock:
    :class:`~.connection.CatalogConnection` says how readers and writers share it)."""

    def __init__(self, target: Path | str, *, timeout_s: float = 30.0) -> None:
        """``target``: a SQLite file, or a ``postgresql://`` URL (the caller's
        ``settings.database(settings.db_path)``); the schema is migrated on open."""
        self.target = target
        self._plan: CatalogPlan | None = None  # set on a view made by planned()
        self._db = CatalogConnection(target, timeout_s=timeout_s)

    @property
    def kind(self) -> str:
        """``"sqlite"`` or ``"postgres"``."""
        return self._db.db.kind

    @property
    def applied_migrations(self) -> list[str]:
        """The migrations this open applied (``catalog:N name``), oldest first."""
        return list(self._db.applied)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> CatalogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self) -> AbstractContextManager[Conn]:
        """One write transaction, writers serialised: all or nothing."""
        return self._db.transaction()

    def read(self) -> AbstractContextManager[Conn]:
        """A consistent read view (one transaction)."""
        return self._db.read()

    # -- the published snapshot (PostgreSQL; SQLite keeps a file, see serving.snapshot)

    def snapshot_pointer(self) -> str | None:
        """The id of the published snapshot recorded in the database, if any."""
        return queries.snapshot_pointer(self._db)

    def publish_snapshot(self, snapshot_id: str) -> None:
        """Record ``snapshot_id`` as the published one and tell every replica (at commit)."""
        rows.set_snapshot_pointer(self._db, snapshot_id)

    # -- change sequence -----------------------------------------------------

    def seq(self) -> int:
        return queries.current_seq(self._db)

    # -- embeddings and source stats -------------------------------------------

    def embedded_shas(self, model: str, shas: Iterable[str]) -> set[str]:
        """The subset of ``shas`` that already has an embedding for ``model``."""
        return embeddings.embedded_shas(self._db, model, shas)

    def embedded_shas_all(self, model: str) -> set[str]:
        """Every sha256 that has an embedding for ``model``."""
        return embeddings.embedded_shas_all(self._db, model)

    def count_embeddings(self, model: str) -> int:
        return embeddings.count_embeddings(self._db, model)

    def put_embeddings(
        self,
        model: str,
        items: Sequence[tuple[str, NDArray[np.float32]]],
        sources: Sequence[tuple[str, int, int, str]] = (),
    ) -> None:
        """Commit a batch of ``(sha256, vector)`` (+ source cache rows) in one transaction."""
        embeddings.put_embeddings(self._db, model, items, sources)

    def get_embeddings(self, model: str, shas: Sequence[str]) -> dict[str, NDArray[np.float32]]:
        return embeddings.get_embeddings(self._db, model, shas)

    def put_sources(self, rows: Sequence[tuple[str, int, int, str]]) -> None:
        embeddings.put_sources(self._db, rows)

    def cached_sha(self, source: str, size: int, mtime_ns: int) -> str | None:
        """sha256 recorded for this file if its size and mtime are unchanged."""
        return embeddings.cached_sha(self._db, source, size, mtime_ns)

    # -- products and images -----------------------------------------------------

    def upsert_products(
        self,
        products: Sequence[tuple[ProductRecord, Sequence[NewImage], bool]],
    ) -> int:
        """Create or update products with their image sets in one transaction.

        Each item is ``(product, images, replace_images)``: with
        ``replace_images`` the product's images not in ``images`` are deleted;
        without it they are kept (a row of the product was rejected, and a
        bad row never removes what was indexed before). Rows that do not
        change keep their ``seq``. Returns the number of rows changed.
        """
        return rows.upsert_products(self._db, products)

    def delete_products(self, product_ids: Iterable[str]) -> int:
        """Mark products (and their images) deleted; returns how many were live."""
        return rows.delete_products(self._db, product_ids)

    def live_product_ids(self) -> set[str]:
        return queries.live_product_ids(self._db)

    def get_product(self, product_id: str) -> tuple[ProductRecord, list[StoredImage]] | None:
        """The live product and its live images, or None if unknown or deleted."""
        return queries.get_product(self._db, product_id)

    def find_image(self, image_id: str) -> StoredImage | None:
        return queries.find_image(self._db, image_id)

    def load_catalog(
        self,
    ) -> tuple[int, list[ProductRecord], list[StoredImage]]:
        """``(seq, live products, live images)`` read in one consistent view."""
        return queries.load_catalog(self._db)

    def live_vectors(self, model: str) -> tuple[int, list[StoredImage], NDArray[np.float32] | None]:
        """``(seq, live images that have an embedding, their vectors)`` in one view.

        On a :meth:`planned` view: the catalog as the plan will commit it, with
        the plan's ``base_seq`` (the catalog is that seq's plus the plan, so
        every row with a later seq is still to be applied over it).
        """
        if self._plan is not None:
            return run_plan.planned_vectors(self._db, self._plan, model)
        return queries.live_vectors(self._db, model)

    def changes_since(
        self, seq: int
    ) -> tuple[int, dict[str, tuple[ProductRecord | None, list[StoredImage]]]]:
        """Products touched after ``seq`` (their row or one of their images changed).

        Returns ``(current seq, {product_id: (live product or None if deleted,
        its live images)})`` read in one consistent view.
        """
        return queries.changes_since(self._db, seq)

    def counts(self) -> dict[str, int]:
        return queries.counts(self._db)

    # -- word search (see .text: an FTS5 index kept by triggers) -------------------

    def text_ranked(
        self, terms: list[str], limit: int, *, every: bool = True
    ) -> list[tuple[str, float]]:
        """``(product_id, rank)`` of the best ``limit`` live products matching every
        word of ``terms`` (:func:`.text.words`; any word with ``every=False``),
        best (lowest rank: negative) first."""
        return text.ranked(self._db.db, terms, every, limit)

    def text_matching(self, terms: list[str], *, every: bool = True) -> set[str]:
        """Every live product matching every (or any) word, unranked."""
        return text.matching(self._db.db, terms, every)

    # -- re-index runs: plan, build from the plan, commit (see .plan) -------------

    def plan_catalog(
        self, products: Sequence[ProductChange], *, prune_keep: set[str] | None = None
    ) -> CatalogPlan:
        """Work out what ``upsert_products(products)`` (then, with ``prune_keep``,
        deleting every live product not in it) would do, without doing it."""
        return run_plan.plan_catalog(self._db, products, prune_keep)

    def planned(self, plan: CatalogPlan) -> CatalogStore:
        """This store (same connection: do not close it) whose :meth:`live_vectors`
        answers as if ``plan`` were committed: what the run's snapshot is built from."""
        view = copy.copy(self)
        view._plan = plan
        return view

    def commit_plan(self, plan: CatalogPlan) -> tuple[int, int]:
        """Apply a plan in one transaction; ``(rows upserted, products removed)``."""
        return run_plan.commit_plan(self._db, plan)

    # -- garbage collection (shoplens.indexer.ops.gc) -----------------------------

    def live_shas(self) -> set[str]:
        """The sha256 of every live image row (all products, all models)."""
        return collect.live_shas(self._db)

    def embedding_stats(self) -> dict[str, EmbeddingStat]:
        """Per sha256: its embedding rows (every model), their bytes, the newest write."""
        return collect.embedding_stats(self._db)

    def collect(
        self,
        shas: Sequence[str],
        *,
        written_before: float,
        remove_files: Callable[[list[str]], list[str]],
    ) -> tuple[list[str], int, int]:
        """Delete the embedding and source-cache rows of the ``shas`` that are orphans
        (no live image row uses them, every embedding older than ``written_before``)
        after ``remove_files`` removed their photos, all in one write transaction.
        Returns ``(shas collected, embedding rows deleted, their vector bytes)``.
        """
        return collect.collect(
            self._db, shas, written_before=written_before, remove_files=remove_files
        )
