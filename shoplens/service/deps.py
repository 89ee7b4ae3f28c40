"""Every FastAPI dependency of the service: what routes take from the running app.

:func:`shoplens.service.app.create_app` puts what it builds on ``app.state``
(``settings`` at once; ``service``, ``ar`` and ``jobs`` in its lifespan). This
module is the only reader of ``app.state``, so what lives there and what routes
receive is said in one place.

The AR part sits below the service and never imports it: its routes come from
the factory :func:`shoplens.ar_assets.routes.build_router`, which takes the
dependencies it needs as arguments; :func:`ar_router` hands it these.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shoplens.ar_assets.routes import ArRouteDeps, build_router
from shoplens.ar_assets.service import ArService
from shoplens.ar_assets.tryon import build_tryon_router
from shoplens.config import Settings
from shoplens.errors import NotReady
from shoplens.indexer.feedback.book import FeedbackBook
from shoplens.indexer.ops.jobs import JobRunner
from shoplens.indexer.serving.live import LiveIndex
from shoplens.service.auth import check_admin
from shoplens.service.state import ServiceState

# The dependencies below are ``async def`` although they never await: FastAPI
# runs a plain ``def`` dependency on the thread pool, a round trip between
# threads per dependency per request for what is an attribute look-up.


def _settings(request: Request) -> Settings:
    # Set by create_app before the lifespan runs: admin checks and links work
    # even in an app whose lifespan never ran.
    settings: Settings = request.app.state.settings
    return settings


def _state(request: Request) -> ServiceState:
    state: ServiceState = request.app.state.service
    return state


def public_base_url(request: Request) -> str:
    """Absolute base of links in answers, without the trailing slash.

    The configured public URL (behind a proxy or a CDN), else the URL this
    request came in on.
    """
    return (_settings(request).public_base_url or str(request.base_url)).rstrip("/")


async def get_base_url(request: Request) -> str:
    return public_base_url(request)


async def get_state(request: Request) -> ServiceState:
    return _state(request)


async def get_live(request: Request) -> LiveIndex:
    """The live index; 503 ``not_ready`` until a snapshot is loaded."""
    return _state(request).index.require()


async def get_catalog(request: Request) -> LiveIndex | None:
    """The live index for read-only look-ups that can do without it (None until loaded)."""
    return _state(request).index.live


async def get_ar(request: Request) -> ArService:
    ar: ArService = request.app.state.ar
    return ar


async def get_jobs(request: Request) -> JobRunner:
    """The re-index job runner; 503 ``not_ready`` until the lifespan started it."""
    runner: JobRunner | None = getattr(request.app.state, "jobs", None)
    if runner is None:
        raise NotReady("the job runner is not started")
    return runner


async def get_feedback(request: Request) -> FeedbackBook:
    """The feedback book; 503 ``not_ready`` until the lifespan opened it."""
    book = _state(request).feedback
    if book is None:
        raise NotReady("the feedback log is not open")
    return book


# Declares the bearer scheme in the OpenAPI description (and Swagger UI's
# "Authorize" button) for every route that depends on require_admin; it never
# refuses anything itself: check_admin decides, with the contract's errors.
_admin_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="adminToken",
    description="`Authorization: Bearer $SHOPLENS_ADMIN_TOKEN`; "
    "with no token configured, admin routes answer 403",
)


async def require_admin(
    request: Request,
    _declared: Annotated[HTTPAuthorizationCredentials | None, Security(_admin_bearer)],
) -> None:
    """For admin routes: 401/403 unless the request carries the admin token."""
    check_admin(_settings(request), request.headers.get("authorization"))


StateDep = Annotated[ServiceState, Depends(get_state)]
LiveDep = Annotated[LiveIndex, Depends(get_live)]
JobsDep = Annotated[JobRunner, Depends(get_jobs)]
FeedbackDep = Annotated[FeedbackBook, Depends(get_feedback)]


def ar_router() -> APIRouter:
    """The AR part's routes, wired to this service's dependencies."""
    ar_deps = ArRouteDeps(
        ar=get_ar, base_url=get_base_url, require_admin=require_admin, catalog=get_catalog
    )
    router = build_router(ar_deps)
    router.include_router(build_tryon_router(ar_deps))
    return router
