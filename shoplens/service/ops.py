"""Operations: liveness, readiness, Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from shoplens import capabilities
from shoplens.service.deps import StateDep
from shoplens.service.schemas import (
    CapabilityStatus,
    Health,
    QueryDomainStatus,
    Readiness,
    ReplicaStatus,
    error_responses,
)

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="Liveness: the process answers")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: an index is loaded and searches are served",
    responses=error_responses(503),
)
async def readyz(state: StateDep) -> Readiness:
    live = state.index.require()
    size = live.size
    domain = live.query_domain()
    return Readiness(
        status="ready",
        model=live.model_name,
        index_version=live.version,
        snapshot_id=live.snapshot_id,
        catalog_seq=live.catalog_seq,
        products=size.get("products", 0),
        images=size.get("images", 0),
        vectors=size.get("vectors", 0),
        # Details beside the answer: a missing optional tool does not make the
        # service unready, but an operator reading this should see what it costs.
        capabilities={
            name: CapabilityStatus(**info)
            for name, info in capabilities.as_json(state.capabilities).items()
        },
        replica=ReplicaStatus(id=state.replica_id, live_replicas=state.live_replicas()),
        query_domain=QueryDomainStatus(searches=domain["searches"], centring=domain["centring"]),
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics (text exposition format)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Metrics"}},
)
async def metrics(state: StateDep) -> Response:
    live = state.index.live
    if live is not None:  # sizes change with every edit, not only on reload: read them now
        state.metrics.set_index(live.size, live.version, live.model_name)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
