"""The feedback book: records searches, takes feedback events, keeps shopper photos.

One :class:`FeedbackBook` per running service (and one per command that needs
it). The search path pays for one SQLite INSERT; with learning on, the photo is
re-encoded and held by a background thread, never on the search's own time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.errors import Conflict, Gone, InvalidContent, NotFound
from shoplens.indexer.feedback import guards, photos
from shoplens.indexer.feedback.store import (
    FeedbackStore,
    PhotoRow,
    new_photo_id,
    new_search_id,
    search_id_time,
)
from shoplens.models.decode import Crop, decode_image

log = logging.getLogger(__name__)

EVENTS = ("click", "confirm", "purchase")
LEARNING_EVENTS = ("confirm", "purchase")
# Photos waiting to be re-encoded and held; past it a search's photo is not held
# (that search cannot be learnt from) rather than memory growing under load.
MAX_QUEUED_PHOTOS = 64
# How long feedback waits for its search's photo to be held (it is queued behind
# at most MAX_QUEUED_PHOTOS re-encodes).
HOLD_WAIT_S = 10.0
SWEEP_EVERY_S = 60.0
DAY_S = 86_400.0


def feedback_db(settings: Settings) -> Path:
    return settings.data_dir / "feedback.db"


@dataclass(frozen=True)
class Accepted:
    """What became of one accepted event: the shopper photo kept (its id and state),
    or why none was (``None`` for events that never keep one)."""

    photo_id: str | None = None
    state: str | None = None
    not_kept: str | None = None


class FeedbackBook:
    def __init__(self, settings: Settings, store: FeedbackStore | None = None) -> None:
        self.settings = settings
        self.learn = settings.learn_from_feedback
        self.review = settings.feedback_review
        self.window_s = settings.feedback_window_hours * 3600.0
        self.retention_s = settings.feedback_retention_days * DAY_S
        self.store = store or FeedbackStore(feedback_db(settings))
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoplens-feedback")
        self._lock = threading.Lock()
        self._held: dict[str, Future[None]] = {}
        self._last_sweep = 0.0

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.store.close()

    # -- the search path ----------------------------------------------------------

    def new_search(
        self,
        shown: list[str],
        *,
        model: str | None = None,
        vector: NDArray[np.float32] | None = None,
        photo: bytes | None = None,
        crop: Crop | None = None,
    ) -> str:
        """Record a search answer; its ``search_id``. The vector and the photo are
        kept (the photo held until the feedback window closes) only with learning on."""
        now = time.time()
        search_id = new_search_id(now)
        learning = self.learn and vector is not None and photo is not None and model is not None
        sha = hashlib.sha256(photo).hexdigest() if learning and photo is not None else None
        self.store.record_search(
            search_id,
            now,
            shown,
            model=model if learning else None,
            vector=vector if learning else None,
            upload_sha=sha,
        )
        with self._lock:
            if learning and photo is not None and len(self._held) < MAX_QUEUED_PHOTOS:
                self._held[search_id] = self._pool.submit(self._hold, search_id, photo, crop)
            sweep = now - self._last_sweep >= SWEEP_EVERY_S
            if sweep:
                self._last_sweep = now
        if sweep:
            self._pool.submit(self._sweep_logged)
        return search_id

    def _hold(self, search_id: str, data: bytes, crop: Crop | None) -> None:
        try:
            image = decode_image(
                data,
                max_pixels=self.settings.max_image_pixels,
                crop=crop,
                draft_size=photos.DRAFT_SIDE,
            )
            photos.hold(self.settings.data_dir, search_id, photos.reencode(image))
        except Exception:  # the search was answered; only its learning is lost
            log.exception("could not hold the photo of search %s", search_id)
        finally:
            with self._lock:
                self._held.pop(search_id, None)

    # -- feedback -------------------------------------------------------------------

    def feedback(
        self, search_id: str, product_id: str, event: str, product_exists: Callable[[str], bool]
    ) -> Accepted:
        """Validate and record one event (``NotFound``, ``Gone``, ``InvalidContent``,
        ``Conflict``), and keep the search's photo when it is a confirmation that
        passes the guards. A refused photo does not refuse the event: a client
        is never told which guard held its photo back."""
        now = time.time()
        born = search_id_time(search_id)
        if born is None:
            raise NotFound(f"unknown search_id {search_id[:80]!r}", code="unknown_search")
        if now - born > self.window_s:
            raise Gone(
                f"search {search_id} is older than {self.settings.feedback_window_hours:g} h: "
                "too old to learn from",
                code="search_too_old",
            )
        search = self.store.search(search_id)
        if search is None:
            raise NotFound(f"unknown search_id {search_id!r}", code="unknown_search")
        if not product_exists(product_id):
            raise NotFound(f"product {product_id!r} does not exist", code="unknown_product")
        if product_id not in search.shown:
            raise InvalidContent(
                f"product {product_id!r} was not among the results of search {search_id}",
                code="product_not_shown",
            )
        why = self.store.add_event(search_id, event, product_id, now)
        if why == "duplicate":
            raise Conflict(
                f"search {search_id} already has a {event!r} event", code="duplicate_feedback"
            )
        if why == "other_product":
            raise Conflict(
                f"search {search_id} was already confirmed for another product",
                code="duplicate_feedback",
            )
        if event not in LEARNING_EVENTS:
            return Accepted()
        if not self.learn or search.vector is None or search.model is None:
            return Accepted(not_kept="learning_off")
        return self._keep(search_id, product_id, event, now)

    def _keep(self, search_id: str, product_id: str, event: str, now: float) -> Accepted:
        search = self.store.search(search_id)
        if search is None or search.vector is None or search.model is None:
            return Accepted(not_kept="search_gone")
        if search.upload_sha and self.store.photos_with_sha(search.upload_sha) >= (
            guards.MAX_PER_UPLOAD
        ):
            return Accepted(not_kept="same_photo_kept")
        if self.store.product_photos_since(product_id, now - DAY_S) >= (
            guards.MAX_NEW_PER_PRODUCT_PER_DAY
        ):
            return Accepted(not_kept="product_daily_cap")
        kept = self.store.product_vectors(product_id, search.model)
        if kept.size and guards.near_duplicate(search.vector, kept):
            return Accepted(not_kept="near_duplicate")
        with self._lock:
            pending = self._held.get(search_id)
        if pending is not None:
            try:
                pending.result(timeout=HOLD_WAIT_S)
            except Exception:
                return Accepted(not_kept="photo_not_held")
        photo_id = new_photo_id()
        if not photos.keep(self.settings.data_dir, search_id, photo_id):
            return Accepted(not_kept="photo_not_held")
        state = "pending" if self.review else "approved"
        try:
            self.store.add_photo(photo_id, search, product_id, event, state, now)
        except BaseException:
            photos.drop_kept(self.settings.data_dir, photo_id)
            raise
        return Accepted(photo_id=photo_id, state=state)

    # -- review, deletion, retention ---------------------------------------------------

    def photo(self, photo_id: str) -> PhotoRow:
        row = self.store.photo(photo_id)
        if row is None:
            raise NotFound(f"no shopper photo {photo_id!r}")
        return row

    def photo_file(self, photo_id: str) -> Path:
        self.photo(photo_id)
        path = photos.kept_path(self.settings.data_dir, photo_id)
        if not path.is_file():
            raise NotFound(f"shopper photo {photo_id!r} has no file (rejected or swept)")
        return path

    def review_photo(self, photo_id: str, approve: bool) -> PhotoRow:
        """Approve, or reject (its file is deleted at once; the row stays so the same
        upload is never kept again, until retention sweeps it)."""
        self.photo(photo_id)
        self.store.set_state(photo_id, "approved" if approve else "rejected")
        if not approve:
            photos.drop_kept(self.settings.data_dir, photo_id)
        return self.photo(photo_id)

    def delete_photo(self, photo_id: str) -> None:
        if not self.store.delete_photo(photo_id):
            raise NotFound(f"no shopper photo {photo_id!r}")
        photos.drop_kept(self.settings.data_dir, photo_id)

    def sweep(self, now: float | None = None) -> int:
        """Forget what the feedback window and the retention let go; photos deleted."""
        now = time.time() if now is None else now
        gone = self.store.sweep(now - self.window_s, now - self.retention_s)
        for photo_id in gone:
            photos.drop_kept(self.settings.data_dir, photo_id)
        held = photos.held_names(self.settings.data_dir)
        live = self.store.live_search_ids(held)
        for search_id in held:
            born = search_id_time(search_id)
            if search_id not in live or born is None or now - born > self.window_s:
                with self._lock:
                    if search_id in self._held:
                        continue  # being written right now
                photos.drop_held(self.settings.data_dir, search_id)
        return len(gone)

    def _sweep_logged(self) -> None:
        try:
            self.sweep()
        except Exception:
            log.exception("sweeping old searches and shopper photos failed")


def feedback_stats(settings: Settings) -> dict[str, Any] | None:
    """The feedback numbers of a data dir (``shoplens status``); None before any search."""
    path = feedback_db(settings)
    if not path.is_file():
        return None
    store = FeedbackStore(path)
    try:
        hours = settings.feedback_window_hours
        stats = store.stats(time.time() - hours * 3600.0)
    finally:
        store.close()
    return {
        "learn_from_feedback": settings.learn_from_feedback,
        "review": settings.feedback_review,
        "window_hours": hours,
        **stats,
    }
