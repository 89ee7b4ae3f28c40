"""Products: read, more-like-this, admin PUT/DELETE, persistence across restarts."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.service.conftest import AppFactory
from tests.service.helpers import DEFAULT_MODEL, demo_photo, jpeg_bytes, search, synthetic_photo


def test_get_product(client: TestClient) -> None:
    r = client.get("/v1/products/granny-smith-apple")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["product_id"] == "granny-smith-apple"
    assert body["title"] == "Granny Smith Apple"
    assert body["category"] == "Apple"
    assert body["currency"] == "SEK"
    assert body["attributes"] == {"brand": "grocer"}
    assert body["ar"] is None
    assert len(body["images"]) == 1
    image = body["images"][0]
    assert image["image_url"] == f"http://testserver/v1/images/{image['image_id']}"
    assert client.get(image["image_url"]).status_code == 200


def test_unknown_product_is_404(client: TestClient) -> None:
    for path in ("/v1/products/nope", "/v1/products/nope/similar"):
        r = client.get(path)
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"


@pytest.mark.real_model
def test_similar_excludes_itself_and_filters(client: TestClient) -> None:
    r = client.get("/v1/products/granny-smith-apple/similar", params={"k": 5})
    assert r.status_code == 200, r.text
    body = r.json()
    ids = [x["product_id"] for x in body["results"]]
    assert len(ids) == 5 and "granny-smith-apple" not in ids
    assert body["model"] == DEFAULT_MODEL and body["index_version"]
    # The search answer's shape, without `regions` (only photo search has them, on request).
    assert set(body) == {"search_id", "results", "took_ms", "model", "index_version"}
    # More like this, but only what can be bought now (sold-out alternatives).
    r = client.get(
        "/v1/products/golden-delicious-apple/similar",
        params={"k": 20, "in_stock": "true", "category": "Apple", "max_price": 100},
    )
    results = r.json()["results"]
    assert results and all(x["in_stock"] and x["category"] == "Apple" for x in results)
    assert client.get("/v1/products/banana/similar", params={"k": 0}).status_code == 400


def _put(
    client: TestClient,
    product_id: str,
    meta: Mapping[str, object] | str,
    photos: list[bytes],
    headers: dict[str, str] | None,
) -> Any:
    files = [("image", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    text = meta if isinstance(meta, str) else json.dumps(meta)
    return client.put(
        f"/v1/products/{product_id}", data={"meta": text}, files=files, headers=headers or {}
    )


def test_put_creates_then_replaces_and_is_searchable_at_once(
    client: TestClient, admin: dict[str, str]
) -> None:
    photo = jpeg_bytes(synthetic_photo(9001))
    meta = {
        "title": "Blue Widget",
        "category": "Widgets",
        "price": "12.50",
        "currency": "eur",
        "in_stock": "no",
        "colour": "blue",
    }
    r = _put(client, "widget-1", meta, [photo], admin)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["product_id"] == "widget-1"
    assert body["price"] == 12.5 and body["currency"] == "EUR" and body["in_stock"] is False
    assert body["attributes"] == {"colour": "blue"}
    assert len(body["images"]) == 1
    top = search(client, photo).json()["results"][0]
    assert top["product_id"] == "widget-1" and top["score"] > 0.99
    assert top["title"] == "Blue Widget"

    photo2 = jpeg_bytes(synthetic_photo(9002))
    r = _put(client, "widget-1", {"title": "Blue Widget v2", "in_stock": True}, [photo2], admin)
    assert r.status_code == 200, r.text
    assert r.json()["title"] == "Blue Widget v2"
    top = search(client, photo2).json()["results"][0]
    assert top["product_id"] == "widget-1" and top["in_stock"] is True
    assert client.get("/v1/products/widget-1").json()["title"] == "Blue Widget v2"


def test_put_several_photos(client: TestClient, admin: dict[str, str]) -> None:
    photos = [jpeg_bytes(synthetic_photo(s)) for s in (9100, 9101, 9102)]
    r = _put(client, "multi.photo:1", {"title": "Three shots"}, photos, admin)
    assert r.status_code == 201, r.text
    assert len(r.json()["images"]) == 3
    for p in photos:
        assert search(client, p, k=1).json()["results"][0]["product_id"] == "multi.photo:1"


@pytest.mark.parametrize(
    ("meta", "status", "code"),
    [
        ("{not json", 400, "bad_parameter"),
        ("[1, 2]", 400, "bad_parameter"),
        ({"product_id": "other-id"}, 400, "bad_parameter"),
        ({"price": "cheap"}, 422, "invalid_product"),
        ({"price": -3}, 422, "invalid_product"),
        ({"currency": "EURO"}, 422, "invalid_product"),
        ({"in_stock": "perhaps"}, 422, "invalid_product"),
    ],
)
def test_put_bad_meta(
    client: TestClient, admin: dict[str, str], meta: dict[str, object] | str, status: int, code: str
) -> None:
    r = _put(client, "widget-x", meta, [jpeg_bytes(synthetic_photo(1))], admin)
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert client.get("/v1/products/widget-x").status_code == 404  # nothing stored


def test_put_bad_id_missing_or_bad_photo(client: TestClient, admin: dict[str, str]) -> None:
    ok = jpeg_bytes(synthetic_photo(2))
    r = _put(client, "bad id!", {}, [ok], admin)
    assert r.status_code == 400
    r = client.put("/v1/products/w", data={"meta": "{}"}, headers=admin)
    assert r.status_code == 400
    assert "image" in r.json()["error"]["message"]
    r = _put(client, "w", {}, [b"GIF89a nonsense"], admin)
    assert r.status_code == 422
    r = _put(client, "w", {}, [b"plain text"], admin)
    assert r.status_code == 415
    assert client.get("/v1/products/w").status_code == 404


def test_admin_auth(make_client: AppFactory, data_dir: Path, client: TestClient) -> None:
    photo = jpeg_bytes(synthetic_photo(3))
    r = _put(client, "w", {}, [photo], None)
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = _put(client, "w", {}, [photo], {"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    assert client.delete("/v1/products/banana").status_code == 401
    with make_client(data_dir, admin_token=None) as no_admin:
        r = no_admin.delete("/v1/products/banana", headers={"Authorization": "Bearer x"})
        assert r.status_code == 403
        assert r.json()["error"]["code"] == "forbidden"
    assert client.get("/v1/products/banana").status_code == 200


def test_delete_removes_at_once(client: TestClient, admin: dict[str, str]) -> None:
    before = search(client, demo_photo("banana")).json()
    assert before["results"][0]["product_id"] == "banana"
    r = client.delete("/v1/products/banana", headers=admin)
    assert r.status_code == 204 and r.content == b""
    after = search(client, demo_photo("banana")).json()
    assert "banana" not in [x["product_id"] for x in after["results"]]
    assert after["index_version"] != before["index_version"]
    assert client.get("/v1/products/banana").status_code == 404
    assert client.delete("/v1/products/banana", headers=admin).status_code == 404


def test_edits_survive_a_restart(
    make_client: AppFactory, data_dir: Path, admin: dict[str, str]
) -> None:
    photo = jpeg_bytes(synthetic_photo(4242))
    with make_client(data_dir) as c:
        assert _put(c, "kept", {"title": "Kept"}, [photo], admin).status_code == 201
        assert c.delete("/v1/products/kiwi", headers=admin).status_code == 204
    with make_client(data_dir) as c:
        assert c.get("/v1/products/kept").json()["title"] == "Kept"
        assert search(c, photo).json()["results"][0]["product_id"] == "kept"
        assert c.get("/v1/products/kiwi").status_code == 404
        assert "kiwi" not in [
            x["product_id"] for x in search(c, demo_photo("kiwi")).json()["results"]
        ]
