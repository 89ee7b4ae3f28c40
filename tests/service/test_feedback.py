"""POST /v1/feedback and search_id: the real app, real SQLite, the stand-in model.

Learning from shoppers is off here (the default): every rule of the contract
holds, and no photo, vector or upload hash is ever kept.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from tests.service.helpers import demo_photo, search


def _search(client: TestClient, product: str = "granny-smith-apple", **params: Any) -> Any:
    r = search(client, demo_photo(product), **params)
    assert r.status_code == 200, r.text
    return r.json()


def _feedback(client: TestClient, search_id: str, product_id: str, event: str) -> Any:
    return client.post(
        "/v1/feedback", json={"search_id": search_id, "product_id": product_id, "event": event}
    )


def _error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def test_every_search_answer_has_its_own_search_id(client: TestClient) -> None:
    a, b = _search(client), _search(client)
    assert a["search_id"] and b["search_id"] and a["search_id"] != b["search_id"]
    words = client.get("/v1/search", params={"q": "apple"})
    assert words.status_code == 200, words.text
    assert words.json()["search_id"] not in (a["search_id"], b["search_id"])
    similar = client.get("/v1/products/granny-smith-apple/similar")
    assert similar.status_code == 200, similar.text
    assert similar.json()["search_id"]


def test_feedback_on_a_shown_product_is_accepted_once_per_event(client: TestClient) -> None:
    body = _search(client, k=5)
    sid, shown = body["search_id"], body["results"][0]["product_id"]
    for event in ("click", "confirm", "purchase"):
        r = _feedback(client, sid, shown, event)
        assert r.status_code == 202, r.text
        assert r.json() == {"accepted": True}
    _error(_feedback(client, sid, shown, "click"), 409, "duplicate_feedback")
    _error(_feedback(client, sid, shown, "confirm"), 409, "duplicate_feedback")
    # A word search answer takes feedback too.
    words = client.get("/v1/search", params={"q": "apple"}).json()
    r = _feedback(client, words["search_id"], words["results"][0]["product_id"], "click")
    assert r.status_code == 202, r.text


def test_a_search_is_confirmed_for_one_product_only(client: TestClient) -> None:
    body = _search(client, k=5)
    sid = body["search_id"]
    first, second = (h["product_id"] for h in body["results"][:2])
    assert _feedback(client, sid, first, "confirm").status_code == 202
    assert _feedback(client, sid, second, "click").status_code == 202
    _error(_feedback(client, sid, second, "purchase"), 409, "duplicate_feedback")


def test_unknown_search_unknown_product_and_not_shown_product(client: TestClient) -> None:
    body = _search(client, k=3)
    sid = body["search_id"]
    shown = {h["product_id"] for h in body["results"]}
    _error(_feedback(client, "s-nope", "banana", "click"), 404, "unknown_search")
    _error(_feedback(client, "not-a-search-id", "banana", "click"), 404, "unknown_search")
    recent = f"s{int(time.time()):x}-made-up"
    _error(_feedback(client, recent, "banana", "click"), 404, "unknown_search")
    _error(_feedback(client, sid, "no-such-product", "click"), 404, "unknown_product")
    other = next(p for p in ("banana", "red-grapefruit", "oatly-oat-milk") if p not in shown)
    _error(_feedback(client, sid, other, "confirm"), 422, "product_not_shown")
    # None of the refused ones counted: the shown product can still be confirmed.
    assert _feedback(client, sid, next(iter(shown)), "confirm").status_code == 202


def test_a_search_older_than_the_window_is_gone(make_client: Any, data_dir: Path) -> None:
    with make_client(data_dir, feedback_window_hours=1.0) as client:
        old = f"s{int(time.time() - 2 * 3600):x}-whatever"
        _error(_feedback(client, old, "banana", "confirm"), 410, "search_too_old")


def test_bad_feedback_bodies_are_400(client: TestClient) -> None:
    sid = _search(client)["search_id"]
    for body in (
        {"search_id": sid, "product_id": "banana", "event": "like"},
        {"search_id": sid, "product_id": "banana"},
        {"search_id": sid, "product_id": "banana", "event": "click", "extra": 1},
        {"search_id": "", "product_id": "banana", "event": "click"},
    ):
        r = client.post("/v1/feedback", json=body)
        _error(r, 400, "bad_parameter")
    _error(
        client.post(
            "/v1/feedback",
            params={"x": "1"},
            json={"search_id": sid, "product_id": "banana", "event": "click"},
        ),
        400,
        "unknown_parameter",
    )


def test_feedback_needs_no_admin_token_and_is_rate_limited(
    make_client: Any, data_dir: Path
) -> None:
    with make_client(data_dir, admin_token=None, rate_limit_per_minute=3) as client:
        body = _search(client, k=3)
        sid, pid = body["search_id"], body["results"][0]["product_id"]
        assert _feedback(client, sid, pid, "click").status_code == 202
        assert _feedback(client, sid, pid, "confirm").status_code == 202
        _error(_feedback(client, sid, pid, "purchase"), 429, "rate_limited")


def test_nothing_is_kept_when_learning_is_off(client: TestClient, data_dir: Path) -> None:
    assert client.app.state.settings.learn_from_feedback is False  # type: ignore[attr-defined]
    for product in ("granny-smith-apple", "banana", "oatly-oat-milk"):
        body = _search(client, product, k=3)
        sid, pid = body["search_id"], body["results"][0]["product_id"]
        assert _feedback(client, sid, pid, "confirm").status_code == 202
        assert _feedback(client, sid, pid, "purchase").status_code == 202
    folder = data_dir / "feedback"
    assert not folder.exists() or not any(p.is_file() for p in folder.rglob("*"))
    with sqlite3.connect(data_dir / "feedback.db") as db:
        kept = db.execute(
            "SELECT COUNT(*) FROM searches WHERE vector IS NOT NULL OR model IS NOT NULL"
        ).fetchone()[0]
        photos = db.execute("SELECT COUNT(*) FROM shopper_photos").fetchone()[0]
        searches = db.execute("SELECT COUNT(*) FROM searches").fetchone()[0]
    assert (kept, photos) == (0, 0)
    assert searches == 3
    metrics = client.get("/metrics").text
    assert 'shoplens_feedback_received_total{event="confirm"} 3.0' in metrics
    assert 'shoplens_feedback_photos_not_kept_total{reason="learning_off"} 6.0' in metrics
    assert "shoplens_searches_logged_total 3.0" in metrics


def test_feedback_is_documented_with_every_status(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    post = spec["paths"]["/v1/feedback"]["post"]
    assert set(post["responses"]) >= {"202", "400", "404", "409", "410", "413", "422", "429", "503"}
    assert "security" not in post
    search_answer = spec["components"]["schemas"]["SearchResponse"]
    assert "search_id" in search_answer["required"]
    for path in ("/v1/admin/feedback", "/v1/admin/learn", "/v1/admin/feedback/{photo_id}"):
        assert path in spec["paths"]
