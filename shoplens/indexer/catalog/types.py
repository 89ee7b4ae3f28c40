"""Plain data passed between the indexer, the live index and the service."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProductRecord:
    """A catalog product as stored (manifest columns + extra attributes)."""

    product_id: str
    title: str | None = None
    category: str | None = None
    description: str | None = None
    url: str | None = None
    price: float | None = None
    currency: str | None = None
    in_stock: bool = True
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ImageRecord:
    """One catalog photo of a product."""

    image_id: str  # public id: used in /v1/images/{image_id}
    product_id: str
    source: str  # the manifest's `image` value (path or URL) or "upload"
    sha256: str  # of the source bytes


@dataclass(frozen=True)
class NewImage:
    """An image to attach to a product: its source and the sha256 of its bytes."""

    source: str
    sha256: str


# (product, its images, replace_images): one product as a catalog write takes it.
ProductChange = tuple[ProductRecord, Sequence[NewImage], bool]


@dataclass(frozen=True)
class StoredImage:
    """An image row as the live index needs it."""

    vid: int
    image_id: str
    product_id: str
    source: str
    sha256: str
    position: int
    deleted: bool
    seq: int

    def record(self) -> ImageRecord:
        return ImageRecord(self.image_id, self.product_id, self.source, self.sha256)


@dataclass(frozen=True)
class SearchFilters:
    categories: tuple[str, ...] = ()
    in_stock: bool | None = None
    min_price: float | None = None
    max_price: float | None = None
    min_score: float | None = None
    # Products never to return (e.g. the product itself for "more like this").
    exclude_products: tuple[str, ...] = ()
    # Other manifest columns, exact string match.
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Hit:
    """One ranked product: the best-scoring image of that product wins."""

    product: ProductRecord
    image_id: str  # the best-matching image
    score: float  # cosine similarity in [-1, 1]


@dataclass(frozen=True)
class SearchResult:
    hits: list[Hit]
    index_version: str
    model: str
    timings_ms: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
