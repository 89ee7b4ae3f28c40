"""The live, searchable view of the catalog the service and `shoplens search` use.

CONTRACT (filled in by the indexer work; the service codes against it):

- ``LiveIndex.open(settings, model_name)`` loads the published snapshot
  (``SnapshotError`` if there is none or it is corrupt, ``ModelMismatch`` if it
  was made by another model) plus every catalog change committed to the
  metadata store after that snapshot was built (PUT/DELETE from the service),
  so edits are searchable at once and survive restarts.
- Thread-safe: searches run on worker threads while ``maybe_reload`` swaps in
  a newly published snapshot; a search in flight finishes on the old one.
"""

from __future__ import annotations

from collections.abc import Sequence

from shoplens.config import Settings
from shoplens.indexer.types import Hit, ImageRecord, ProductRecord, SearchFilters
from shoplens.models.base import FloatArray, ImageEmbedder


class LiveIndex:
    @classmethod
    def open(cls, settings: Settings, model_name: str) -> LiveIndex:
        raise NotImplementedError

    @property
    def version(self) -> str:
        """Changes whenever results can change (new snapshot or catalog edit)."""
        raise NotImplementedError

    @property
    def model_name(self) -> str:
        raise NotImplementedError

    @property
    def size(self) -> dict[str, int]:
        """{"products": n, "images": n, "vectors": n} currently searchable."""
        raise NotImplementedError

    def maybe_reload(self) -> bool:
        """Swap to a newer published snapshot if there is one; True if swapped."""
        raise NotImplementedError

    def search(self, vector: FloatArray, k: int, filters: SearchFilters) -> list[Hit]:
        """Top-k distinct products for an L2-normalised query vector.

        Returns k hits whenever at least k products pass the filters, however
        selective the filter is.
        """
        raise NotImplementedError

    def similar(self, product_id: str, k: int, filters: SearchFilters) -> list[Hit]:
        """More like this: products nearest to the product's own images (itself excluded)."""
        raise NotImplementedError

    def product(self, product_id: str) -> tuple[ProductRecord, list[ImageRecord]]:
        """``NotFound`` if unknown or deleted."""
        raise NotImplementedError

    def image_path(self, image_id: str) -> str:
        """Path of the stored (re-encoded) catalog photo; ``NotFound`` if unknown."""
        raise NotImplementedError

    def upsert_product(
        self, product: ProductRecord, images: Sequence[bytes], embedder: ImageEmbedder
    ) -> ProductRecord:
        """Create or replace a product with its photos; searchable when this returns."""
        raise NotImplementedError

    def delete_product(self, product_id: str) -> None:
        """Remove at once from results; ``NotFound`` if unknown."""
        raise NotImplementedError

