"""The write side of the live catalog: product upserts and deletes from the service.

A :class:`CatalogWriter` validates, ingests the uploaded photos through the one
ingest step (``shoplens.indexer.engines.ingest.ingest_upload``: stored photo +
prepared tensor), embeds them, commits the rows to the store, and only then
lets the live index serve the change (:meth:`LiveIndex.apply_edit`). Everything an edit needs is
on disk before the in-memory view changes, so an acknowledged write survives
a restart. The writer holds no state of its own: the service may make one per
request.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shoplens.errors import ModelMismatch, NotFound
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import NewImage, ProductRecord
from shoplens.indexer.engines.ingest import ingest_upload
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.sources.manifest import validate_product
from shoplens.models.base import FloatArray, ImageEmbedder


class CatalogWriter:
    """Upserts and deletes on a :class:`LiveIndex`'s catalog, searchable on return."""

    def __init__(self, live: LiveIndex) -> None:
        self._live = live

    def upsert_product(
        self, product: ProductRecord, images: Sequence[bytes], embedder: ImageEmbedder
    ) -> ProductRecord:
        """Create or replace a product with its photos; searchable when this returns.

        With no images the product's metadata is updated and its photos kept.
        """
        live = self._live
        settings = live.settings
        product = validate_product(product)
        if embedder.name != live.model_name:
            raise ModelMismatch(
                f"the embedder is {embedder.name!r} but the index uses {live.model_name!r}"
            )
        if embedder.dim != live.dim:
            raise ModelMismatch(
                f"the embedder has dimension {embedder.dim}, the index has {live.dim}"
            )
        new: list[NewImage] = []
        prepared: list[FloatArray] = []
        shas: list[str] = []
        for i, data in enumerate(images):
            sha, array = ingest_upload(settings, data, i + 1, embedder)
            new.append(NewImage(source="upload", sha256=sha))
            shas.append(sha)
            prepared.append(array)
        # Embedded before taking the write lock: the model is the slow part and
        # other edits need not wait for it; the rows still commit in lock order.
        vecs = embedder.embed_prepared(np.stack(prepared).astype(np.float32)) if prepared else None

        def commit(store: CatalogStore) -> ProductRecord:
            if vecs is not None:
                store.put_embeddings(live.model_name, list(zip(shas, list(vecs), strict=True)))
            store.upsert_products([(product, new, bool(new))])
            stored = store.get_product(product.product_id)
            if stored is None:  # deleted by another process in between
                raise NotFound(f"product {product.product_id!r} does not exist")
            return stored[0]

        return live.apply_edit(commit)

    def delete_product(self, product_id: str) -> None:
        """Remove at once from results; ``NotFound`` if unknown."""

        def commit(store: CatalogStore) -> None:
            if store.delete_products([product_id]) == 0:
                raise NotFound(f"product {product_id!r} does not exist")

        self._live.apply_edit(commit)
