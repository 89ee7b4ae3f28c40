"""What the service holds while it runs (on ``app.state``).

Routes get it through the dependencies of :mod:`shoplens.service.deps`.

Nothing here is module-level: :func:`shoplens.service.app.create_app` builds a
:class:`ServiceState` in its lifespan, so tests can run several apps side by
side with their own settings.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from shoplens import capabilities
from shoplens.capabilities import Capability
from shoplens.config import Settings
from shoplens.errors import ModelMismatch, NotReady, SnapshotError
from shoplens.indexer.feedback.book import FeedbackBook
from shoplens.indexer.feedback.store import new_search_id
from shoplens.indexer.ops.replicas import ReplicaHeartbeat, new_replica_id
from shoplens.indexer.serving.live import LiveIndex
from shoplens.models.base import FloatArray, ImageEmbedder, TextEmbedder
from shoplens.models.decode import Crop
from shoplens.service.metrics import Metrics
from shoplens.service.renditions import Renditions

log = logging.getLogger(__name__)


class ArBlocks(Protocol):
    """What results need from the AR part: the AR block of each product that has one."""

    def blocks(self, product_ids: list[str], base_url: str) -> dict[str, dict[str, Any]]: ...


class IndexHolder:
    """The live index, or why there is none yet.

    The service starts without a snapshot (``/readyz`` answers 503); the
    reload task keeps trying to open one, then keeps swapping in newer ones.
    """

    def __init__(self, settings: Settings, model_name: str, metrics: Metrics) -> None:
        self._settings = settings
        self._model_name = model_name
        self._metrics = metrics
        self._lock = threading.Lock()
        self.live: LiveIndex | None = None
        self.reason = "the index has not been opened yet"

    def poll(self) -> None:
        """Open the index if there is none yet, else swap in a newer snapshot (blocking)."""
        with self._lock:
            if self.live is None:
                self._try_open()
            elif self.live.maybe_reload():
                self._metrics.index_reloads.inc()
                log.info("swapped in index version %s", self.live.version)
            if self.live is not None:
                self.live.sync_query_domain()
                self._metrics.query_domain_searches.set(self.live.query_domain()["searches"])
                self._metrics.set_index(self.live.size, self.live.version, self.live.model_name)

    def _try_open(self) -> None:
        try:
            self.live = LiveIndex.open(self._settings, self._model_name)
        except (SnapshotError, ModelMismatch) as exc:
            if exc.message != self.reason:
                log.warning("index not ready: %s", exc.message)
            self.reason = exc.message
            return
        log.info(
            "index %s loaded (%s)",
            self.live.version,
            ", ".join(f"{v} {k}" for k, v in self.live.size.items()),
        )

    def version(self) -> str | None:
        """The snapshot served now (the replica registry's ``version``)."""
        live = self.live
        return None if live is None else live.version

    def require(self) -> LiveIndex:
        live = self.live
        if live is None:
            raise NotReady(f"the search index is not ready: {self.reason}")
        return live

    def close(self) -> None:
        live, self.live = self.live, None
        close = getattr(live, "close", None)
        if callable(close):
            close()


def check_capabilities(settings: Settings) -> list[Capability]:
    """The optional capabilities, with a start-up warning for each missing one this
    service relies on: without Node an AR upload silently loses Khronos validation
    and its mobile variant, which an operator should read once, in the log."""
    caps = capabilities.check(settings)
    for cap in caps:
        if cap.degraded:
            log.warning("%s", capabilities.warning_line(cap))
    return caps


@dataclass
class ServiceState:
    settings: Settings
    embedder: ImageEmbedder
    text_embedder: TextEmbedder | None
    index: IndexHolder
    metrics: Metrics
    renditions: Renditions
    ar: ArBlocks
    # As checked at start-up (the Node tools are looked up once per process too):
    # what /readyz reports.
    capabilities: list[Capability] = field(default_factory=list)
    # The search log and shoppers' feedback (shoplens.indexer.feedback).
    feedback: FeedbackBook | None = None
    # This process among the replicas sharing the database: its id (job owner,
    # /readyz) and, over PostgreSQL, its registration (live replica count).
    replica_id: str = field(default_factory=new_replica_id)
    replicas: ReplicaHeartbeat | None = None

    def live_replicas(self) -> int:
        return 1 if self.replicas is None else self.replicas.count

    # ``base``: the request's public base URL (shoplens.service.deps.public_base_url).
    def image_url(self, base: str, image_id: str) -> str:
        return f"{base}/v1/images/{image_id}"

    def record_search(
        self,
        shown: list[str],
        *,
        vector: FloatArray | None = None,
        photo: bytes | None = None,
        crop: Crop | None = None,
    ) -> str:
        """Log a search answer for feedback; its ``search_id`` (no write here: the
        book's background writer commits it within ~0.1 s).

        The vector and photo are only kept with learning from shoppers on (the
        book decides). A failure to log never fails the search: its id is then
        simply unknown to POST /v1/feedback (404).
        """
        book = self.feedback
        if book is not None:
            try:
                search_id = book.new_search(
                    shown, model=self.embedder.name, vector=vector, photo=photo, crop=crop
                )
            except Exception:
                log.exception("could not log a search for feedback")
            else:
                self.metrics.searches_logged.inc()
                return search_id
        return new_search_id(time.time())

    def ar_blocks(self, base: str, product_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not product_ids:
            return {}
        return self.ar.blocks(product_ids, base)
