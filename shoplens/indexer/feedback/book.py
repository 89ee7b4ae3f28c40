"""The feedback book: records searches, takes feedback events, keeps shopper photos.

One :class:`FeedbackBook` per running service (and one per command that needs
it). The search path pays for one SQLite INSERT. With learning on, the upload's
bytes are also held *in memory* (a size-bounded queue, oldest dropped first)
until a confirmation asks for them: only then is the photo decoded,
re-encoded without its metadata and written to disk. A photo nobody confirms
never reaches the disk, and the search pays no decoding or encoding for it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.errors import Conflict, Gone, InvalidContent, NotFound, ShoplensError
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
# Uploads held in memory for a confirmation to keep (learning on): past either
# bound the oldest are dropped (their searches can no longer be learnt from).
# A shopper confirms within seconds or minutes of the answer; at 256 MiB of
# 2 MP phone photos (~250 KiB) that is the last ~1000 searches.
HELD_MAX_BYTES = 256 * 1024 * 1024
HELD_MAX_PHOTOS = 4096
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
        self._held: OrderedDict[str, tuple[bytes, Crop | None]] = OrderedDict()
        self._held_bytes = 0
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
        """Record a search answer; its ``search_id``. Only with learning on are the
        vector kept and the photo held (in memory, see the module docstring)."""
        now = time.time()
        search_id = new_search_id(now)
        learning = self.learn and vector is not None and photo is not None and model is not None
        self.store.record_search(
            search_id,
            now,
            shown,
            model=model if learning else None,
            vector=vector if learning else None,
        )
        with self._lock:
            if learning and photo is not None:
                self._held[search_id] = (photo, crop)
                self._held_bytes += len(photo)
                while self._held and (
                    self._held_bytes > HELD_MAX_BYTES or len(self._held) > HELD_MAX_PHOTOS
                ):
                    _, (dropped, _) = self._held.popitem(last=False)
                    self._held_bytes -= len(dropped)
            sweep = now - self._last_sweep >= SWEEP_EVERY_S
            if sweep:
                self._last_sweep = now
        if sweep:
            self._pool.submit(self._sweep_logged)
        return search_id

    def _take_held(self, search_id: str) -> tuple[bytes, Crop | None] | None:
        with self._lock:
            held = self._held.pop(search_id, None)
            if held is not None:
                self._held_bytes -= len(held[0])
        return held

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
        # Taken whatever the guards say: a confirmed search's photo is needed no more.
        held = self._take_held(search_id)
        if held is None:
            return Accepted(not_kept="photo_not_held")
        data, crop = held
        upload_sha = hashlib.sha256(data).hexdigest()
        if self.store.photos_with_sha(upload_sha) >= guards.MAX_PER_UPLOAD:
            return Accepted(not_kept="same_photo_kept")
        if self.store.product_photos_since(product_id, now - DAY_S) >= (
            guards.MAX_NEW_PER_PRODUCT_PER_DAY
        ):
            return Accepted(not_kept="product_daily_cap")
        kept = self.store.product_vectors(product_id, search.model)
        if kept.size and guards.near_duplicate(search.vector, kept):
            return Accepted(not_kept="near_duplicate")
        try:
            image = decode_image(
                data,
                max_pixels=self.settings.max_image_pixels,
                crop=crop,
                draft_size=photos.DRAFT_SIDE,
            )
        except ShoplensError:  # it was decoded for the search; never expected
            return Accepted(not_kept="photo_unreadable")
        photo_id = new_photo_id()
        photos.write_kept(self.settings.data_dir, photo_id, photos.reencode(image))
        state = "pending" if self.review else "approved"
        try:
            self.store.add_photo(photo_id, search, product_id, event, state, now, upload_sha)
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
        with self._lock:
            for search_id in list(self._held):  # oldest first
                born = search_id_time(search_id)
                if born is not None and now - born <= self.window_s:
                    break
                self._held_bytes -= len(self._held.pop(search_id)[0])
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
