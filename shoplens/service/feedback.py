"""Learning from shoppers over HTTP: ``POST /v1/feedback`` (the shopper's app, no
token), the admin's review of kept shopper photos and ``POST /v1/admin/learn``.

The rules live in :class:`shoplens.indexer.feedback.book.FeedbackBook`; this
module declares the routes, their statuses and the metrics.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shoplens.errors import NotFound, ShoplensError
from shoplens.ids import PRODUCT_ID_PATTERN
from shoplens.indexer.feedback.book import FeedbackBook
from shoplens.indexer.feedback.store import PhotoRow
from shoplens.service.admin import JobCreated
from shoplens.service.deps import (
    FeedbackDep,
    JobsDep,
    LiveDep,
    StateDep,
    public_base_url,
    require_admin,
)
from shoplens.service.schemas import ErrorBody, error_responses

router = APIRouter(tags=["feedback"])
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    search_id: str = Field(
        min_length=1, max_length=64, description="the `search_id` of the search answer"
    )
    product_id: str = Field(
        description="a product that answer showed",
        json_schema_extra={"pattern": PRODUCT_ID_PATTERN},
        min_length=1,
        max_length=128,
    )
    event: Literal["click", "confirm", "purchase"] = Field(
        description="click: the shopper opened it; confirm: the shopper said "
        '"this is it"; purchase: they bought it'
    )


class FeedbackAccepted(BaseModel):
    accepted: bool = Field(True, description="always true: the event was recorded")


_FEEDBACK_ERRORS: dict[int | str, dict[str, Any]] = {
    **error_responses(400, 429, 503),
    404: {
        "model": ErrorBody,
        "description": "Unknown search (`unknown_search`) or product (`unknown_product`)",
    },
    409: {
        "model": ErrorBody,
        "description": "This search already has this event, or was "
        "confirmed for another product (`duplicate_feedback`)",
    },
    410: {
        "model": ErrorBody,
        "description": "The search is older than the feedback window "
        "(`search_too_old`, SHOPLENS_FEEDBACK_WINDOW_HOURS)",
    },
    422: {
        "model": ErrorBody,
        "description": "The product was not among that search's results (`product_not_shown`)",
    },
}


@router.post(
    "/v1/feedback",
    status_code=202,
    response_model=FeedbackAccepted,
    summary="Tell the service what the shopper did with a search answer",
    description=(
        "Sent by the shopper's app (no admin token), rate limited like search. Each "
        "event at most once per search, for a product that search showed. With "
        "`SHOPLENS_LEARN_FROM_FEEDBACK=true` the photo of a search that got a `confirm` "
        "or `purchase` is kept (re-encoded, without metadata, for "
        "`SHOPLENS_FEEDBACK_RETENTION_DAYS`) as a shopper photo of the product, after "
        "the poisoning checks; `shoplens learn` learns from them. Shopper photos are "
        "never shown to shoppers."
    ),
    responses=_FEEDBACK_ERRORS,
)
async def post_feedback(
    body: FeedbackRequest, state: StateDep, book: FeedbackDep, live: LiveDep
) -> FeedbackAccepted:
    def exists(product_id: str) -> bool:
        try:
            live.product(product_id)
        except NotFound:
            return False
        return True

    metrics = state.metrics
    try:
        outcome = await run_in_threadpool(
            book.feedback, body.search_id, body.product_id, body.event, exists
        )
    except ShoplensError as exc:
        metrics.feedback_refused.labels(exc.code).inc()
        raise
    metrics.feedback_received.labels(body.event).inc()
    if outcome.state is not None:
        metrics.feedback_kept.labels(outcome.state).inc()
    elif outcome.not_kept is not None:
        metrics.feedback_not_kept.labels(outcome.not_kept).inc()
    return FeedbackAccepted(accepted=True)


class ShopperPhoto(BaseModel):
    photo_id: str
    product_id: str
    event: Literal["confirm", "purchase"]
    state: Literal["pending", "approved", "rejected"]
    created_at: str
    learnt_at: str | None = Field(
        description="when the last learn run learnt from it (null: that run did not)"
    )
    snapshot_id: str | None = Field(description="the snapshot that learn run published")
    photo_url: str | None = Field(description="the photo (admin token needed); null once rejected")


class FeedbackStats(BaseModel):
    window_hours: float = Field(description="the feedback window the search numbers cover")
    searches: int
    events: dict[str, int]
    click_through_rate: float | None
    confirm_rate: float | None
    photos: dict[str, int] = Field(description="kept shopper photos by state")
    learnt: int = Field(description="approved photos the last learn run learnt from")


class ShopperPhotos(BaseModel):
    photos: list[ShopperPhoto]
    total: int
    stats: FeedbackStats
    learn_from_feedback: bool
    review: bool


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _photo(row: PhotoRow, base: str) -> ShopperPhoto:
    return ShopperPhoto(
        photo_id=row.photo_id,
        product_id=row.product_id,
        event=row.event,  # type: ignore[arg-type]
        state=row.state,  # type: ignore[arg-type]
        created_at=_iso(row.created_at) or "",
        learnt_at=_iso(row.learnt_at),
        snapshot_id=row.snapshot_id,
        photo_url=None
        if row.state == "rejected"
        else f"{base}/v1/admin/feedback/{row.photo_id}/photo",
    )


def _stats(book: FeedbackBook) -> FeedbackStats:
    import time

    hours = book.settings.feedback_window_hours
    return FeedbackStats(window_hours=hours, **book.store.stats(time.time() - hours * 3600))


# Documented, not enforced: another shape is simply unknown (404).
PhotoId = Annotated[
    str, Path(description="a shopper photo's id", json_schema_extra={"pattern": "^p[0-9a-f]{16}$"})
]


@admin_router.get(
    "/feedback",
    response_model=ShopperPhotos,
    summary="Kept shopper photos (newest first) and the feedback numbers",
    responses=error_responses(400, 401, 403, 503),
)
async def list_feedback(
    request: Request,
    book: FeedbackDep,
    state: Annotated[
        Literal["pending", "approved", "rejected"] | None,
        Query(description="only photos in this state (`pending`: waiting for review)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> ShopperPhotos:
    base = public_base_url(request)

    def work() -> ShopperPhotos:
        rows, total = book.store.photos(state, limit, offset)
        return ShopperPhotos(
            photos=[_photo(r, base) for r in rows],
            total=total,
            stats=_stats(book),
            learn_from_feedback=book.learn,
            review=book.review,
        )

    return await run_in_threadpool(work)


@admin_router.get(
    "/feedback/{photo_id}/photo",
    response_class=FileResponse,
    summary="One kept shopper photo (JPEG, for review; never shown to shoppers)",
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "the re-encoded photo"},
        **error_responses(401, 403, 404, 503),
    },
)
async def feedback_photo(photo_id: PhotoId, book: FeedbackDep) -> FileResponse:
    path = await run_in_threadpool(book.photo_file, photo_id)
    return FileResponse(
        path, media_type="image/jpeg", headers={"Cache-Control": "private, no-store"}
    )


async def _review(
    photo_id: str, approve: bool, request: Request, book: FeedbackDep, state: StateDep
) -> ShopperPhoto:
    row = await run_in_threadpool(book.review_photo, photo_id, approve)
    state.metrics.feedback_reviewed.labels("approved" if approve else "rejected").inc()
    return _photo(row, public_base_url(request))


@admin_router.post(
    "/feedback/{photo_id}/approve",
    response_model=ShopperPhoto,
    summary="Approve a shopper photo: the next learn run may learn from it",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def approve_feedback(
    photo_id: PhotoId, request: Request, book: FeedbackDep, state: StateDep
) -> ShopperPhoto:
    return await _review(photo_id, True, request, book, state)


@admin_router.post(
    "/feedback/{photo_id}/reject",
    response_model=ShopperPhoto,
    summary="Reject a shopper photo: its file is deleted, it is never learnt from",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def reject_feedback(
    photo_id: PhotoId, request: Request, book: FeedbackDep, state: StateDep
) -> ShopperPhoto:
    return await _review(photo_id, False, request, book, state)


@admin_router.delete(
    "/feedback/{photo_id}",
    status_code=204,
    response_class=Response,
    summary="Delete a shopper photo and everything kept of it",
    description="The next learn run (or re-index) no longer learns from it.",
    responses=error_responses(400, 401, 403, 404, 503),
)
async def delete_feedback(photo_id: PhotoId, book: FeedbackDep) -> Response:
    await run_in_threadpool(book.delete_photo, photo_id)
    return Response(status_code=204)


@admin_router.post(
    "/learn",
    status_code=202,
    response_model=JobCreated,
    summary="Learn from approved shopper photos (a background job, like re-index)",
    description=(
        "Builds a snapshot of the live catalog whose adaptation also learns from the "
        "approved shopper photos; the service switches to it by itself. Follow it with "
        "GET /v1/admin/jobs/{job_id}."
    ),
    responses={
        **error_responses(400, 401, 403, 503),
        409: {"model": ErrorBody, "description": "Another job is queued or running"},
    },
)
async def learn(jobs: JobsDep) -> JobCreated:
    return JobCreated(job_id=await run_in_threadpool(jobs.submit_learn))
