"""Response bodies of the HTTP API (pydantic, so /openapi.json describes them)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str = Field(examples=["bad_parameter"], description="stable snake_case code")
    message: str = Field(description="a sentence a person can act on")
    request_id: str | None = Field(
        None, description="the answer's X-Request-ID, to find its access-log line"
    )


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message"}}``."""

    error: ErrorDetail


class SearchResultItem(BaseModel):
    product_id: str
    score: float = Field(
        description="photo search: cosine similarity in [-1, 1] of the best-matching image "
        "(on a studio catalog, plus a bonus for a geometrically verified match among the "
        "first 10, still in [-1, 1] and descending); word search (GET /v1/search without "
        "a text model): relevance in (0, 1], above 0.5 "
        "when every word matched, comparable within one answer"
    )
    title: str | None
    category: str | None
    price: float | None
    currency: str | None
    in_stock: bool
    image_url: str = Field(
        description="absolute URL of the best-matching catalog photo (GET /v1/images/{image_id})"
    )
    ar: dict[str, Any] | None = Field(description="the product's AR block, or null")


class RegionBox(BaseModel):
    """A region of the photo as the shopper sees it (EXIF orientation applied)."""

    x: float = Field(ge=0, le=1, description="left edge, fraction of the photo's width")
    y: float = Field(ge=0, le=1, description="top edge, fraction of the photo's height")
    w: float = Field(gt=0, le=1, description="width, fraction of the photo's width")
    h: float = Field(gt=0, le=1, description="height, fraction of the photo's height")


class SearchRegion(BaseModel):
    """One product found in the photo (``regions=auto``) and its own results."""

    box: RegionBox
    score: float = Field(
        description="how clearly the region holds a catalog product: its best match's "
        "similarity, plus how far that match leads the region's next ones, minus how "
        "much of the rest of the photo it also matches best; comparable within one "
        "answer (regions come best first)"
    )
    label: str | None = Field(description="the category of the region's best match, or null")
    results: list[SearchResultItem] = Field(
        description="the region's own results: same shape, k and filters as `results`"
    )


class SearchResponse(BaseModel):
    search_id: str = Field(
        description="opaque id of this answer: send it back with POST /v1/feedback",
        examples=["s6752c1f0-3q2hTz0bX1mKpA9c"],
    )
    results: list[SearchResultItem]
    regions: list[SearchRegion] | None = Field(
        default=None,
        description="only with `regions=auto`: the separate products found in the photo, "
        "best first (may be empty); absent otherwise",
    )
    took_ms: float = Field(description="server time for the whole request, milliseconds")
    model: str
    index_version: str


class ProductImage(BaseModel):
    image_id: str
    image_url: str


class ProductResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_id: str
    title: str | None
    category: str | None
    description: str | None
    url: str | None
    price: float | None
    currency: str | None
    in_stock: bool
    attributes: dict[str, str]
    images: list[ProductImage]
    ar: dict[str, Any] | None
    index_version: str


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class CapabilityStatus(BaseModel):
    """One optional capability (``shoplens doctor`` lists the same)."""

    title: str
    available: bool
    used: bool = Field(description="This configuration relies on it: missing, behaviour changes")
    enables: str
    without: str = Field(description="What the service does while it is missing")
    install: str = Field(description="How to enable it")
    found: str = Field(description="What was found (versions, paths), or what is missing")


class ReplicaStatus(BaseModel):
    id: str = Field(description="This process's replica id (job rows name it as owner)")
    live_replicas: int = Field(
        description="Replicas sharing the database with a fresh heartbeat, this one included "
        "(1 without SHOPLENS_DATABASE_URL); rate limits are divided by it"
    )


class QueryDomainStatus(BaseModel):
    searches: int = Field(
        description="Photo searches the shop's query mean is made of (older ones fade)"
    )
    centring: bool = Field(
        description="Whether photo searches are centred on that mean now (a studio "
        "snapshot, SHOPLENS_QUERY_CENTRING not off, at least 30 searches)"
    )


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    model: str
    index_version: str
    snapshot_id: str = Field(description="The published snapshot this replica serves")
    catalog_seq: int = Field(
        description="The catalog change sequence it serves (edits after the snapshot included)"
    )
    products: int
    images: int
    vectors: int
    capabilities: dict[str, CapabilityStatus] = Field(
        default_factory=dict,
        description="Optional capabilities as found at start-up, by name "
        "(khronos_validator, gltf_transform, usdz, heic, avif, export, openclip, ray)",
    )
    replica: ReplicaStatus | None = None
    query_domain: QueryDomainStatus | None = None


class DemoSample(BaseModel):
    name: str
    product_id: str
    title: str
    url: str


ERROR_DESCRIPTIONS: dict[int, str] = {
    400: "Bad parameter: a malformed or out-of-range value (`bad_parameter`), "
    "or a query parameter or form field the route does not take (`unknown_parameter`)",
    401: "Missing or invalid admin token",
    403: "Admin endpoints disabled (no token configured)",
    404: "Unknown id",
    409: "Conflict with the catalog's state",
    410: "Gone: too old to use (a search older than the feedback window)",
    413: "Upload too large (bytes or pixels)",
    415: "Not a supported image format",
    422: "Invalid content (corrupt image, invalid product fields)",
    429: "Rate limited (see Retry-After)",
    503: "Index not loaded yet (see Retry-After)",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": ERROR_DESCRIPTIONS[s]} for s in statuses}
