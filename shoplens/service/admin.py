"""Admin operations: re-index jobs (``POST /v1/admin/reindex``, ``GET /v1/admin/jobs/{id}``).

The job runner (:class:`shoplens.indexer.ops.jobs.JobRunner`): :func:`start_jobs`
builds it in the app's lifespan with the service's loaded model, so a job embeds
with exactly the model that serves; routes get it through ``JobsDep``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from shoplens.indexer.ops.jobs import JobRunner
from shoplens.service.deps import JobsDep, require_admin
from shoplens.service.schemas import ErrorBody, error_responses
from shoplens.service.state import ServiceState

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])

_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "Another re-index job is queued or running"}
}


class ReindexRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    manifest: str = Field(
        min_length=1, description="path of a catalog manifest on the server's file system"
    )
    prune: bool = Field(default=False, description="delete products absent from the manifest")


class JobCreated(BaseModel):
    job_id: str


class JobProgress(BaseModel):
    done: int = Field(description="manifest images processed by the current attempt")
    total: int | None = Field(description="manifest images (null until the manifest is read)")
    rate_per_s: float | None
    eta_s: float | None
    phase: str = Field(description="queued, starting, embedding, building index, done, ...")


class JobCounts(BaseModel):
    indexed: int
    unchanged: int
    rejected: int
    removed: int


class JobReject(BaseModel):
    line: int
    product_id: str | None
    reason: str


class JobResponse(BaseModel):
    job_id: str
    kind: Literal["reindex", "learn"] = Field(
        description="reindex: POST /v1/admin/reindex; learn: POST /v1/admin/learn"
    )
    state: Literal["queued", "running", "succeeded", "failed", "interrupted"]
    manifest: str = Field(description="the re-indexed manifest (empty for a learn job)")
    prune: bool
    created_at: str
    started_at: str | None
    finished_at: str | None
    attempts: int = Field(description="runs of this job (a restarted service resumes it)")
    progress: JobProgress
    counts: JobCounts | None = Field(description="what the run did; null until it succeeded")
    rejects: list[JobReject] = Field(description="the first rejected rows (at most 100)")
    rejects_total: int
    rejects_path: str | None = Field(description="the server-side file listing every reject")
    seconds: float | None
    error: str | None
    snapshot_id: str | None = Field(description="the snapshot the job published")
    learn: dict[str, Any] | None = Field(
        default=None,
        description="a learn job's report: shopper photos learnt from, outliers left out, "
        "the adaptation's facts; null for a re-index",
    )


# Documented, not enforced: an id of another shape is simply unknown (404).
JobId = Annotated[
    str,
    Path(
        description="the id POST /v1/admin/reindex answered",
        json_schema_extra={"pattern": "^job-[0-9]{8}T[0-9]{12}Z-[0-9a-f]{6}$"},
    ),
]


def start_jobs(state: ServiceState) -> JobRunner:
    """Build and start the job runner (resuming unfinished jobs)."""

    def swap_in(snapshot_id: str) -> None:
        state.index.poll()

    runner = JobRunner(state.settings, state.embedder, on_success=swap_in, owner=state.replica_id)
    runner.start()
    return runner


@router.post(
    "/reindex",
    status_code=202,
    response_model=JobCreated,
    summary="Re-index the catalog from a manifest (a background job)",
    responses={**error_responses(400, 401, 403, 503), **_CONFLICT},
)
async def reindex(body: ReindexRequest, jobs: JobsDep) -> JobCreated:
    job_id = await run_in_threadpool(jobs.submit, body.manifest, body.prune)
    return JobCreated(job_id=job_id)


@router.get(
    "/jobs/{job_id}",
    response_model=JobResponse,
    summary="An admin job (re-index or learn): state, progress, counts, rejects",
    responses=error_responses(401, 403, 404, 503),
)
async def get_job(job_id: JobId, jobs: JobsDep) -> JobResponse:
    job = await run_in_threadpool(jobs.get, job_id)
    return JobResponse.model_validate(job)
