"""Learning from shoppers on: kept photos, review, deletion, retention, the poisoning
guards, and `POST /v1/admin/learn` switching the running service to what it learnt.

The real app, real SQLite, real files, the stand-in model (what is asserted does not
depend on what the model sees).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.indexer.feedback.book import FeedbackBook
from shoplens.indexer.feedback.guards import MAX_NEW_PER_PRODUCT_PER_DAY
from shoplens.indexer.serving.snapshot import current_id, read_facts
from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo
from tests.service.jobs_helpers import AUTH, finished, wait_job

LEARNING = {"learn_from_feedback": True}


@pytest.fixture
def learning(make_client: Any, data_dir: Path) -> Iterator[TestClient]:
    with make_client(data_dir, **LEARNING) as c:
        yield c


def _confirm(client: TestClient, photo: bytes, event: str = "confirm", rank: int = 0) -> str:
    """Search with ``photo`` and confirm the result at ``rank``; that product's id."""
    r = search(client, photo, k=5)
    assert r.status_code == 200, r.text
    body = r.json()
    pid: str = body["results"][rank]["product_id"]
    f = client.post(
        "/v1/feedback", json={"search_id": body["search_id"], "product_id": pid, "event": event}
    )
    assert f.status_code == 202, f.text
    return pid


def _photos(client: TestClient, **params: Any) -> Any:
    r = client.get("/v1/admin/feedback", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def _with_exif(photo: bytes) -> bytes:
    img = Image.open(BytesIO(photo))
    exif = Image.Exif()
    exif[0x010F] = "SecretPhoneMaker"  # Make
    exif[0x8825] = {2: (59.0, 20.0, 0.0)}  # GPSInfo: latitude
    out = BytesIO()
    img.save(out, "JPEG", exif=exif.tobytes())
    return out.getvalue()


def test_a_confirmed_photo_is_kept_re_encoded_without_metadata(
    learning: TestClient, data_dir: Path
) -> None:
    upload = _with_exif(demo_photo("granny-smith-apple"))
    assert b"SecretPhoneMaker" in upload
    pid = _confirm(learning, upload)
    listed = _photos(learning)
    assert listed["total"] == 1 and listed["learn_from_feedback"] is True
    photo = listed["photos"][0]
    assert (photo["product_id"], photo["state"], photo["event"]) == (pid, "approved", "confirm")
    r = learning.get(photo["photo_url"].split("testserver")[-1], headers=AUTH)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    kept = Image.open(BytesIO(r.content))
    assert max(kept.size) <= 640
    assert b"SecretPhoneMaker" not in r.content and not kept.getexif()
    # Never shown without the admin token.
    assert learning.get(photo["photo_url"].split("testserver")[-1]).status_code == 401
    files = list((data_dir / "feedback" / "photos").glob("*.jpg"))
    assert len(files) == 1 and files[0].read_bytes() == r.content
    metrics = learning.get("/metrics").text
    assert 'shoplens_feedback_photos_kept_total{state="approved"} 1.0' in metrics


def test_an_unconfirmed_photo_never_reaches_the_disk(learning: TestClient, data_dir: Path) -> None:
    _confirm(learning, demo_photo("banana"), event="click")
    search(learning, demo_photo("oatly-oat-milk"))
    assert _photos(learning)["total"] == 0
    folder = data_dir / "feedback"
    assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))
    # Held in memory for a later confirmation, dropped when the window closes.
    book = learning.app.state.service.feedback  # type: ignore[attr-defined]
    assert len(book._held) == 2
    book.sweep(now=time.time() + book.window_s + 1)
    assert len(book._held) == 0 and book._held_bytes == 0
    with sqlite3.connect(data_dir / "feedback.db") as db:
        assert db.execute("SELECT COUNT(*) FROM searches").fetchone()[0] == 0


def test_a_confirmation_after_the_photo_was_dropped_keeps_nothing(
    learning: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoplens.indexer.feedback import book

    monkeypatch.setattr(book, "HELD_MAX_PHOTOS", 2)
    first = search(learning, demo_photo("banana"), k=5).json()
    for product in ("granny-smith-apple", "oatly-oat-milk"):  # push it out of the queue
        search(learning, demo_photo(product))
    r = learning.post(
        "/v1/feedback",
        json={
            "search_id": first["search_id"],
            "product_id": first["results"][0]["product_id"],
            "event": "confirm",
        },
    )
    assert r.status_code == 202, r.text
    assert _photos(learning)["total"] == 0
    metrics = learning.get("/metrics").text
    assert 'shoplens_feedback_photos_not_kept_total{reason="photo_not_held"} 1.0' in metrics


def test_review_mode_approve_reject_and_delete(make_client: Any, data_dir: Path) -> None:
    with make_client(data_dir, feedback_review=True, **LEARNING) as client:
        for product in ("granny-smith-apple", "banana", "oatly-oat-milk"):
            _confirm(client, demo_photo(product))
        pending = _photos(client, state="pending")
        assert pending["total"] == 3 and pending["review"] is True
        assert _photos(client, state="approved")["total"] == 0
        a, b, c = (p["photo_id"] for p in pending["photos"])
        r = client.post(f"/v1/admin/feedback/{a}/approve", headers=AUTH)
        assert r.status_code == 200 and r.json()["state"] == "approved", r.text
        r = client.post(f"/v1/admin/feedback/{b}/reject", headers=AUTH)
        assert r.status_code == 200 and r.json()["state"] == "rejected", r.text
        assert r.json()["photo_url"] is None
        assert not (data_dir / "feedback" / "photos" / f"{b}.jpg").exists()
        assert client.delete(f"/v1/admin/feedback/{c}", headers=AUTH).status_code == 204
        assert not (data_dir / "feedback" / "photos" / f"{c}.jpg").exists()
        assert client.delete(f"/v1/admin/feedback/{c}", headers=AUTH).status_code == 404
        assert client.post(f"/v1/admin/feedback/{c}/approve", headers=AUTH).status_code == 404
        assert client.post(f"/v1/admin/feedback/{a}/approve").status_code == 401
        stats = _photos(client)["stats"]
        assert stats["photos"] == {"pending": 0, "approved": 1, "rejected": 1}
        assert stats["events"]["confirm"] == 3 and stats["searches"] == 3
        assert stats["confirm_rate"] == 1.0


def test_retention_deletes_kept_photos(make_client: Any, data_dir: Path) -> None:
    with make_client(data_dir, feedback_retention_days=30, **LEARNING) as client:
        _confirm(client, demo_photo("banana"))
        assert _photos(client)["total"] == 1
    book = FeedbackBook(Settings(data_dir=data_dir, feedback_retention_days=30, **LEARNING))
    try:
        assert book.sweep(now=time.time() + 29 * 86400) == 0
        assert book.sweep(now=time.time() + 31 * 86400) == 1
    finally:
        book.close()
    assert not list((data_dir / "feedback" / "photos").glob("*.jpg"))
    with sqlite3.connect(data_dir / "feedback.db") as db:
        assert db.execute("SELECT COUNT(*) FROM shopper_photos").fetchone()[0] == 0


def test_one_photo_confirmed_a_thousand_times_is_kept_once(learning: TestClient) -> None:
    photo = demo_photo("oatly-oat-milk")
    confirmed = {_confirm(learning, photo, rank=i % 3) for i in range(30)}
    assert len(confirmed) >= 2  # a poisoner spreading it over several products
    assert _photos(learning)["total"] == 1
    # Re-encoded (other bytes, the same picture): a near-duplicate of the same product.
    first = _photos(learning)["photos"][0]["product_id"]
    again = jpeg_bytes(Image.open(BytesIO(photo)), quality=70)
    r = search(learning, again, k=5).json()
    if first in {h["product_id"] for h in r["results"]}:
        f = learning.post(
            "/v1/feedback",
            json={"search_id": r["search_id"], "product_id": first, "event": "confirm"},
        )
        assert f.status_code == 202
        assert _photos(learning)["total"] == 1
    metrics = learning.get("/metrics").text
    assert 'shoplens_feedback_photos_not_kept_total{reason="same_photo_kept"} 29.0' in metrics


def test_a_product_takes_a_bounded_number_of_new_photos_a_day(
    learning: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shoplens.indexer.feedback import guards

    monkeypatch.setattr(guards, "MAX_NEW_PER_PRODUCT_PER_DAY", 3)
    monkeypatch.setattr(guards, "NEAR_DUPLICATE", 1.01)  # only the daily cap is tested here
    original = Image.open(BytesIO(demo_photo("banana")))
    target = None
    for i in range(8):  # eight different uploads of the banana, all confirmed as it
        variant = original.rotate(2 * i, fillcolor=(255, 255, 255))
        r = search(learning, jpeg_bytes(variant, quality=80 + i), k=5).json()
        target = target or r["results"][0]["product_id"]
        assert target in {h["product_id"] for h in r["results"]}
        f = learning.post(
            "/v1/feedback",
            json={"search_id": r["search_id"], "product_id": target, "event": "confirm"},
        )
        assert f.status_code == 202, f.text
    assert _photos(learning)["total"] == 3
    metrics = learning.get("/metrics").text
    assert 'shoplens_feedback_photos_not_kept_total{reason="product_daily_cap"} 5.0' in metrics
    assert MAX_NEW_PER_PRODUCT_PER_DAY > 3  # the shipped cap is the looser one


def test_learn_publishes_a_snapshot_the_running_service_switches_to(
    learning: TestClient, data_dir: Path
) -> None:
    before = search(learning, demo_photo("banana")).json()["index_version"]
    confirmed = [
        _confirm(learning, jpeg_bytes(synthetic_photo(20_000 + i)), rank=0) for i in range(6)
    ]
    r = learning.post("/v1/admin/learn", headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_job(lambda p: learning.get(p, headers=AUTH), r.json()["job_id"], 60, finished)
    assert job["state"] == "succeeded", job
    assert job["kind"] == "learn" and job["manifest"] == ""
    assert job["learn"]["learnt"] + job["learn"]["outliers"] == len(confirmed)
    snapshot = current_id(Settings(data_dir=data_dir))
    assert job["snapshot_id"] == snapshot
    facts = read_facts(data_dir / "snapshots" / str(snapshot))
    assert facts["build"]["learn"]["shopper_photos"] == job["learn"]["learnt"]
    # Each learnt photo also taught the adaptation three crops of itself (cached).
    learnt = job["learn"]["learnt"]
    assert f"{job['learn']['catalog_images'] + 4 * learnt} images" in (
        facts.get("adaptation_reason") or f"{facts['adaptation']['n_images']} images"
    )
    views = data_dir / "feedback" / "views" / facts["model"]
    assert len(list(views.glob("*.npy"))) == learnt
    # No restart: the very next search is answered from the learnt snapshot.
    after = search(learning, demo_photo("banana")).json()["index_version"]
    assert after != before and after.startswith(str(snapshot))
    listed = _photos(learning)
    assert sum(p["learnt_at"] is not None for p in listed["photos"]) == job["learn"]["learnt"]
    # A deleted photo is not learnt from again; the marks follow the published snapshot.
    gone = next(p["photo_id"] for p in listed["photos"] if p["learnt_at"] is not None)
    assert learning.delete(f"/v1/admin/feedback/{gone}", headers=AUTH).status_code == 204
    assert not (views / f"{gone}.npy").exists()  # deleted with the photo
    again = learning.post("/v1/admin/learn", headers=AUTH)
    assert again.status_code == 202, again.text
    second = wait_job(lambda p: learning.get(p, headers=AUTH), again.json()["job_id"], 60, finished)
    assert second["state"] == "succeeded", second
    assert second["learn"]["learnt"] == job["learn"]["learnt"] - 1
    marked = {p["snapshot_id"] for p in _photos(learning)["photos"] if p["learnt_at"]}
    assert marked == {second["snapshot_id"]}


def test_a_re_index_keeps_learning_from_shopper_photos(
    learning: TestClient, catalog_manifest: Path
) -> None:
    for i in range(3):
        _confirm(learning, jpeg_bytes(synthetic_photo(30_000 + i)))
    r = learning.post("/v1/admin/reindex", json={"manifest": str(catalog_manifest)}, headers=AUTH)
    assert r.status_code == 202, r.text
    job = wait_job(lambda p: learning.get(p, headers=AUTH), r.json()["job_id"], 120, finished)
    assert job["state"] == "succeeded", job
    photos = _photos(learning)["photos"]
    assert len(photos) == 3
    assert {p["snapshot_id"] for p in photos} == {job["snapshot_id"]}


def test_shoplens_status_shows_the_feedback_numbers(learning: TestClient, data_dir: Path) -> None:
    import os
    import subprocess
    import sys

    for product in ("banana", "granny-smith-apple"):
        _confirm(learning, demo_photo(product))
    search(learning, demo_photo("oatly-oat-milk"))  # a search nobody confirmed
    env = {**os.environ, "SHOPLENS_DATA_DIR": str(data_dir), "SHOPLENS_LEARN_FROM_FEEDBACK": "1"}
    repo = Path(__file__).resolve().parents[2]
    run = [sys.executable, "-m", "shoplens.cli", "status"]
    p = subprocess.run([*run, "--json"], cwd=repo, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    fb = json.loads(p.stdout)["feedback"]
    assert fb["searches"] == 3 and fb["events"]["confirm"] == 2
    assert fb["confirm_rate"] == round(2 / 3, 4) and fb["learn_from_feedback"] is True
    assert fb["photos"]["approved"] == 2
    p = subprocess.run(run, cwd=repo, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "3 searches" in p.stdout and "2 confirms (66.7%)" in p.stdout
    assert "learning on: 0 photos pending review, 2 approved (0 learnt)" in p.stdout
