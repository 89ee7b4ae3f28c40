"""The feedback book over one shared PostgreSQL database (two replicas), and over the
SQLite files of the previous release.

Two real :class:`FeedbackBook` objects stand for two replicas: a search answered
by A takes feedback on B once A's background writer flushed it (well under a
second), and with learning on, A keeps the photo of a search B took the
confirmation for. Skipped (the PostgreSQL cases) where the server cannot run.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr

from shoplens.config import Settings
from shoplens.errors import NotFound
from shoplens.indexer.feedback.book import FeedbackBook, feedback_db
from shoplens.indexer.feedback.store import SCHEMA, FeedbackStore
from shoplens.indexer.feedback.writer import FLUSH_S
from tests.service.helpers import jpeg_bytes, synthetic_photo

MODEL = "test-model"


def _book(data_dir: Path, url: str | None, **kw: Any) -> FeedbackBook:
    secret = None if url is None else SecretStr(url)
    return FeedbackBook(Settings(data_dir=data_dir, database_url=secret, **kw))


@pytest.fixture
def two_replicas(tmp_path: Path, pg_url: str) -> Iterator[tuple[FeedbackBook, FeedbackBook]]:
    # One shared data dir (kept photos), one shared database: two replicas.
    a = _book(tmp_path / "data", pg_url, learn_from_feedback=True)
    b = _book(tmp_path / "data", pg_url, learn_from_feedback=True)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _accepted_within(book: FeedbackBook, search_id: str, product: str, event: str) -> float:
    """Seconds until ``book`` accepts the event (it answers 404 until the row landed)."""
    start = time.monotonic()
    while True:
        try:
            book.feedback(search_id, product, event, lambda p: True)
            return time.monotonic() - start
        except NotFound:
            if time.monotonic() - start > 5:
                raise
            time.sleep(0.01)


def test_a_search_answered_by_one_replica_takes_feedback_on_the_other(
    two_replicas: tuple[FeedbackBook, FeedbackBook],
) -> None:
    a, b = two_replicas
    search_id = a.new_search(["p1", "p2"])
    assert a.writer.pending() in (0, 1)  # filed in memory, not written on the request path
    took = _accepted_within(b, search_id, "p2", "click")
    assert took < 1.0
    stats = a.store.stats(time.time() - 60)
    assert stats["searches"] == 1 and stats["events"]["click"] == 1


def test_a_confirmation_taken_by_another_replica_keeps_the_holders_photo(
    two_replicas: tuple[FeedbackBook, FeedbackBook], tmp_path: Path
) -> None:
    a, b = two_replicas
    vector = np.random.default_rng(0).normal(size=16).astype(np.float32)
    photo = jpeg_bytes(synthetic_photo(3))
    search_id = a.new_search(["p1"], model=MODEL, vector=vector, photo=photo)
    a.writer.flush()
    # B has no copy of the photo: it records the confirmation, keeps nothing itself...
    outcome = b.feedback(search_id, "p1", "confirm", lambda p: True)
    assert outcome.photo_id is None and outcome.not_kept == "photo_not_held"
    # ... and A, which holds the photo, keeps it within its keeper's interval.
    deadline = time.monotonic() + 5
    rows: list[Any] = []
    while time.monotonic() < deadline and not rows:
        rows, _ = b.store.photos(None, 10, 0)
        time.sleep(0.05)
    assert len(rows) == 1, "the holder never kept the photo"
    assert (rows[0].search_id, rows[0].product_id, rows[0].event) == (search_id, "p1", "confirm")
    assert (tmp_path / "data" / "feedback" / "photos" / f"{rows[0].photo_id}.jpg").is_file()
    assert a.keep_confirmed_elsewhere(0.0) == []  # kept once: nothing left to do


def test_a_search_is_known_to_its_own_replica_at_once(tmp_path: Path) -> None:
    """The writer's delay never shows on one machine: feedback flushes its search first."""
    book = _book(tmp_path / "data", None)
    try:
        book.writer.flush_s = 30.0  # the background flush would come far too late
        search_id = book.new_search(["p1"])
        book.feedback(search_id, "p1", "click", lambda p: True)
    finally:
        book.close()


def test_close_writes_what_is_still_waiting(tmp_path: Path) -> None:
    book = _book(tmp_path / "data", None)
    book.writer.flush_s = 30.0
    ids = [book.new_search([f"p{i}"]) for i in range(20)]
    book.close()
    store = FeedbackStore(feedback_db(Settings(data_dir=tmp_path / "data")))
    try:
        assert store.live_search_ids(ids) == set(ids)
    finally:
        store.close()
    assert FLUSH_S < 0.5  # replicas see a search well within a second


def test_a_feedback_file_of_the_previous_release_opens_with_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "data" / "feedback.db"
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:  # as the previous release left it
        db.executescript(SCHEMA)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO searches (search_id, created_at, shown) VALUES (?, ?, ?)",
            ("s1-old", time.time(), '["p1"]'),
        )
        db.execute(
            "INSERT INTO events (search_id, event, product_id, at) VALUES (?, ?, ?, ?)",
            ("s1-old", "click", "p1", time.time()),
        )
    store = FeedbackStore(path)
    try:
        row = store.search("s1-old")
        assert row is not None and row.shown == ["p1"]
        assert store.add_event("s1-old", "click", "p1", time.time()) == "duplicate"
        assert store.stats(0)["events"]["click"] == 1
    finally:
        store.close()


def test_the_store_behaves_the_same_on_both_backends(tmp_path: Path, db_target: str | None) -> None:
    target = db_target or tmp_path / "feedback.db"
    store = FeedbackStore(target)
    try:
        vec = np.arange(8, dtype=np.float32)
        store.record_search("s1-a", time.time(), ["p1", "p2"], model=MODEL, vector=vec)
        store.record_search("s1-a", time.time(), ["p9"])  # a repeat is ignored
        got = store.search("s1-a")
        assert got is not None and got.shown == ["p1", "p2"] and got.vector is not None
        assert np.array_equal(got.vector, vec)
        assert store.add_event("s1-a", "confirm", "p1", time.time()) is None
        assert store.add_event("s1-a", "purchase", "p2", time.time()) == "other_product"
        unkept = store.unkept_confirmations(0)
        assert [u[:3] for u in unkept] == [("s1-a", "confirm", "p1")]
        store.add_photo("pa", got, "p1", "confirm", "pending", time.time(), "sha")
        assert store.unkept_confirmations(0) == []
        assert store.photos_with_sha("sha") == 1
        assert store.product_vectors("p1", MODEL).shape == (1, 8)
        assert store.set_state("pa", "approved") and store.learnable(MODEL)[0][0] == "pa"
        store.mark_learnt(["pa"], "snap-1", time.time())
        rows, total = store.photos("approved", 10, 0)
        assert total == 1 and rows[0].snapshot_id == "snap-1"
        assert store.stats(0)["learnt"] == 1
        assert store.sweep(time.time() + 1, time.time() + 1) == ["pa"]
        assert store.search("s1-a") is None and store.delete_photo("pa") is False
    finally:
        store.close()
