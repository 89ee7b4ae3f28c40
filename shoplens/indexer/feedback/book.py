"""The feedback book: records searches, takes feedback events, keeps shopper photos.

One :class:`FeedbackBook` per running service (and one per command that needs
it). The search path pays for no database write: its row goes to the
background :class:`~shoplens.indexer.feedback.writer.SearchLogWriter`, which
commits a batch every ~0.1 s (so with replicas, feedback for a search
answered by replica A is accepted by replica B within that). With learning
on, the upload's bytes are also held *in memory* (a size-bounded queue,
oldest dropped first) until a confirmation asks for them: only then is the
photo decoded, re-encoded without its metadata and written to disk. A photo
nobody confirms never reaches the disk, and the search pays no decoding or
encoding for it.

Replicas (shared PostgreSQL database): the photo is held by the replica that
answered the search. A confirmation that another replica receives is recorded
there (its answer keeps no photo: ``photo_not_held``), and the holder's keeper
thread, which looks every :data:`KEEP_SCAN_S` for confirmations of searches
it holds, keeps the photo through the same guards. A holder that restarted or
dropped the photo (memory bound) keeps nothing, as on one machine.
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
    NewSearch,
    PhotoRow,
    SearchRow,
    new_photo_id,
    new_search_id,
    search_id_time,
)
from shoplens.indexer.feedback.writer import SearchLogWriter
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
# Replicas: how often a holder looks for confirmations another replica took,
# and how far back (clock skew between replicas, commit delays).
KEEP_SCAN_S = 0.5
KEEP_SCAN_MARGIN_S = 30.0


def feedback_db(settings: Settings) -> Path:
    return settings.data_dir / "feedback.db"


def feedback_target(settings: Settings) -> Path | str:
    """Where the feedback rows live: ``feedback.db``, or the shared database."""
    return settings.database(feedback_db(settings))


def has_feedback(settings: Settings) -> bool:
    """Whether a feedback database may exist (commands that only read it)."""
    return settings.database_url is not None or feedback_db(settings).is_file()


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
        self.store = store or FeedbackStore(feedback_target(settings))
        self.writer = SearchLogWriter(self.store)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shoplens-feedback")
        self._lock = threading.Lock()
        self._held: OrderedDict[str, tuple[bytes, Crop | None]] = OrderedDict()
        self._held_bytes = 0
        self._confirming: set[str] = set()  # searches this book's feedback() is handling
        self._last_sweep = 0.0
        self._closing = threading.Event()
        self._keeper: threading.Thread | None = None
        if self.learn and self.store.db.is_postgres:  # other replicas may take confirmations
            self._keeper = threading.Thread(
                target=self._keep_loop, name="shoplens-feedback-keeper", daemon=True
            )
            self._keeper.start()

    def close(self) -> None:
        self._closing.set()
        if self._keeper is not None:
            self._keeper.join(10.0)
        self.writer.close()
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
        self.writer.put(
            NewSearch(
                search_id,
                now,
                shown,
                model=model if learning else None,
                vector=vector if learning else None,
            )
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
        self.writer.ensure_written(search_id)  # answered here a moment ago
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
        with self._lock:  # the keeper thread leaves this one to us
            self._confirming.add(search_id)
        try:
            return self._record(search, product_id, event, now)
        finally:
            with self._lock:
                self._confirming.discard(search_id)

    def _record(self, search: SearchRow, product_id: str, event: str, now: float) -> Accepted:
        search_id = search.search_id
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

    def _keep_loop(self) -> None:
        """Keep the photos of held searches that another replica took a confirmation for."""
        last = time.time()
        while not self._closing.wait(KEEP_SCAN_S):
            with self._lock:
                holding = bool(self._held)
            now = time.time()
            if not holding:
                last = now
                continue
            try:
                self.keep_confirmed_elsewhere(last - KEEP_SCAN_MARGIN_S)
            except Exception:
                log.exception("looking for confirmations taken by other replicas failed")
                continue
            last = now

    def keep_confirmed_elsewhere(self, since: float) -> list[Accepted]:
        """One keeper pass: confirmations since ``since`` of searches held here."""
        out: list[Accepted] = []
        for search_id, event, product_id, at in self.store.unkept_confirmations(since):
            with self._lock:
                ours = search_id in self._held and search_id not in self._confirming
            if ours:
                outcome = self._keep(search_id, product_id, event, at)
                log.info(
                    "kept photo of search %s confirmed on another replica: %s", search_id, outcome
                )
                out.append(outcome)
        return out

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
    if not has_feedback(settings):
        return None
    store = FeedbackStore(feedback_target(settings))
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
