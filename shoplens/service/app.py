"""The FastAPI application factory.

Everything the app needs is built in its lifespan and kept on ``app.state``;
routes get it through dependencies (:mod:`shoplens.service.deps`, the only
reader of ``app.state``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoplens import __name__ as _pkg
from shoplens.ar_assets.service import ArService
from shoplens.config import Settings
from shoplens.db.notify import CATALOG_CHANNEL, Listener
from shoplens.indexer.feedback.book import FeedbackBook
from shoplens.indexer.ops.replicas import start_heartbeat, stop_heartbeat
from shoplens.models.base import ImageEmbedder, TextEmbedder
from shoplens.service import (
    admin,
    deps,
    docs,
    feedback,
    handlers,
    home,
    images,
    methods,
    ops,
    products,
    search,
)
from shoplens.service import openapi as openapi_doc
from shoplens.service.limits import BodyLimitMiddleware
from shoplens.service.metrics import Metrics
from shoplens.service.middleware import RequestIdMiddleware
from shoplens.service.ratelimit import RateLimitMiddleware, TokenBuckets
from shoplens.service.renditions import Renditions
from shoplens.service.state import IndexHolder, ServiceState, check_capabilities
from shoplens.service.strict import ParameterCheck

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"

DESCRIPTION = """\
Visual product search for shop apps: send a photo, get the matching products
(with their AR try-on block when there is one).

Every error is `{"error": {"code": "snake_case", "message": "human sentence"}}`.
Admin routes need `Authorization: Bearer $SHOPLENS_ADMIN_TOKEN`.
"""


class MetricsMiddleware:
    """Request latency by route template (never raw paths: ids would explode the labels)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            template = str(getattr(route, "path", "")) or "unmatched"
            self.metrics.request_seconds.labels(scope["method"], template, str(status)).observe(
                time.perf_counter() - started
            )


def _warm_up(embedder: ImageEmbedder) -> None:
    """One inference on a blank photo so the first shopper does not pay ORT's lazy setup."""
    started = time.perf_counter()
    embedder.embed([Image.new("RGB", (320, 320), (127, 127, 127))])
    log.info("model %s warmed up in %.0f ms", embedder.name, (time.perf_counter() - started) * 1e3)


def _load_embedder(settings: Settings) -> ImageEmbedder:
    from shoplens.models.registry import load_embedder

    model: ImageEmbedder = load_embedder(settings)
    return model


def _load_text_embedder(settings: Settings) -> TextEmbedder | None:
    from shoplens.models.registry import load_text_embedder

    encoder: TextEmbedder | None = load_text_embedder(settings)
    return encoder


async def _reload_loop(holder: IndexHolder, interval_s: float, wake: asyncio.Event) -> None:
    """Pick up newly published snapshots (or the first one) and catalog edits other
    processes committed, without a restart: every ``interval_s``, and at once when
    ``wake`` is set (a PostgreSQL NOTIFY from another replica, see :func:`_follow`)."""
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=interval_s)
        wake.clear()  # before polling: a change committed meanwhile wakes it again
        try:
            await run_in_threadpool(holder.poll)
        except Exception:  # keep serving the current snapshot; retry next tick
            log.exception("checking for a new index snapshot failed")


def _follow(settings: Settings, wake: asyncio.Event) -> Listener | None:
    """On PostgreSQL, a LISTEN on the catalog channel that sets ``wake`` on the event
    loop when a replica commits a catalog edit or publishes a snapshot, so this
    replica serves it within a round trip instead of the next poll. SQLite has
    no notifications: the reload loop's polling is all there is (one machine)."""
    if settings.database_url is None:
        return None
    loop = asyncio.get_running_loop()

    def on_change() -> None:
        # Called on the listener's thread; asyncio objects belong to the loop's.
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(wake.set)

    listener = Listener(
        settings.database(settings.db_path),
        [CATALOG_CHANNEL],
        on_change,
        poll_s=settings.reload_interval_s,
        call_on_poll=False,  # _reload_loop polls every reload_interval_s already
    )
    listener.start()
    return listener


def create_app(
    settings: Settings,
    *,
    embedder: ImageEmbedder | None = None,
    text_embedder: TextEmbedder | None = None,
) -> FastAPI:
    """Build the service. ``embedder``/``text_embedder``: already-loaded models to reuse
    (tests share one per session); by default they are loaded from the registry."""
    metrics = Metrics()
    per_minute = settings.rate_limit_per_minute
    # Built here, not by the middleware: the replica heartbeat sets its share.
    buckets = TokenBuckets(per_minute) if per_minute > 0 else None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        image_model = embedder
        if image_model is None:
            image_model = await run_in_threadpool(_load_embedder, settings)
        await run_in_threadpool(_warm_up, image_model)
        text_model = text_embedder
        if text_model is None:
            text_model = await run_in_threadpool(_load_text_embedder, settings)
        holder = IndexHolder(settings, image_model.name, metrics)
        await run_in_threadpool(holder.poll)
        ar = await run_in_threadpool(ArService.open, settings)
        state = ServiceState(
            settings=settings,
            embedder=image_model,
            text_embedder=text_model,
            index=holder,
            metrics=metrics,
            renditions=Renditions(
                settings.data_dir / "cache" / "renditions", max_pixels=settings.max_image_pixels
            ),
            ar=ar,
            capabilities=await run_in_threadpool(check_capabilities, settings),
            feedback=await run_in_threadpool(FeedbackBook, settings),
        )
        if settings.database_url is not None:  # replicas: register, share the rate limits
            state.replicas = await run_in_threadpool(
                functools.partial(
                    start_heartbeat,
                    settings.database(settings.db_path),
                    state.replica_id,
                    interval_s=settings.replica_heartbeat_s,
                    stale_s=settings.replica_stale_s,
                    version=holder.version,
                    on_count=buckets.set_share if buckets is not None else lambda n: None,
                )
            )
        app.state.service = state
        app.state.ar = ar
        jobs = await run_in_threadpool(admin.start_jobs, state)
        app.state.jobs = jobs
        wake = asyncio.Event()
        reloader = asyncio.create_task(_reload_loop(holder, settings.reload_interval_s, wake))
        listener = _follow(settings, wake)
        try:
            yield {}
        finally:
            await run_in_threadpool(jobs.stop)
            if listener is not None:
                await run_in_threadpool(listener.stop)
            if state.replicas is not None:
                await run_in_threadpool(stop_heartbeat, state.replicas)
            reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
            holder.close()
            if state.feedback is not None:
                await run_in_threadpool(state.feedback.close)
            ar.close()

    app = FastAPI(
        title="Shoplens",
        version=_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        # Runs first on every route: unknown query parameters and form fields are a 400.
        dependencies=[Depends(ParameterCheck())],
        # /docs is served from our own files (docs.py); ReDoc would need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    handlers.install(app)
    methods.install(app)
    for module in (search, products, images, ops, home, feedback):
        app.include_router(module.router)
    app.include_router(deps.ar_router())
    app.include_router(admin.router)
    app.include_router(feedback.admin_router)
    openapi_doc.install(app)
    docs.install(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    # Added innermost first: request id > CORS > metrics > rate limit > body limit > app.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_request_bytes,
        max_asset_bytes=settings.max_asset_bytes,
    )
    app.add_middleware(RateLimitMiddleware, per_minute=per_minute, buckets=buckets)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
        )
    app.add_middleware(RequestIdMiddleware)
    return app


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory shoplens.service.app:app_from_env`` (settings from env)."""
    return create_app(Settings())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(_pkg)
    except PackageNotFoundError:
        return "0.0.0"
