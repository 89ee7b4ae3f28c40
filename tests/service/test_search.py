"""POST /v1/search and GET /v1/search against a real app and index (the stand-in model,
or the real one where the test is marked ``real_model``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from shoplens.demo import DEMO_DIR as DEMO
from tests.service.conftest import AppFactory
from tests.service.helpers import DEFAULT_MODEL, RARE, demo_photo, jpeg_bytes, search

RESULT_KEYS = {
    "product_id",
    "score",
    "title",
    "category",
    "price",
    "currency",
    "in_stock",
    "image_url",
    "ar",
}


@pytest.mark.real_model
def test_photo_of_a_product_finds_it_first(client: TestClient) -> None:
    r = search(client, demo_photo("granny-smith-apple"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"search_id", "results", "took_ms", "model", "index_version"}
    assert body["model"] == DEFAULT_MODEL
    assert body["took_ms"] > 0
    results = body["results"]
    assert len(results) == 10
    assert all(set(item) == RESULT_KEYS for item in results)
    top = results[0]
    assert top["product_id"] == "granny-smith-apple"
    assert top["score"] > 0.99
    assert top["title"] == "Granny Smith Apple"
    assert top["category"] == "Apple"
    assert top["currency"] == "SEK"
    assert isinstance(top["price"], float)
    assert top["ar"] is None
    scores = [item["score"] for item in results]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert len({item["product_id"] for item in results}) == len(results)  # one per product


def test_image_url_is_absolute_and_serves_the_photo(client: TestClient) -> None:
    top = search(client, demo_photo("banana")).json()["results"][0]
    assert top["image_url"].startswith("http://testserver/v1/images/")
    img = client.get(top["image_url"])
    assert img.status_code == 200
    assert img.headers["content-type"] in ("image/jpeg", "image/webp")


def test_public_base_url_is_used_for_links(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, public_base_url="https://shop.example/lens/") as c:
        top = search(c, demo_photo("banana")).json()["results"][0]
    assert top["image_url"].startswith("https://shop.example/lens/v1/images/")


@pytest.mark.real_model
def test_shopper_photo_finds_the_product(client: TestClient) -> None:
    from shoplens import demo

    sample = next(s for s in demo.samples() if s.product_id == "cabbage")
    results = search(client, sample.path.read_bytes()).json()["results"]
    assert sample.product_id in [r["product_id"] for r in results[:5]]


@pytest.mark.parametrize("k", [1, 3, 100])
def test_k(client: TestClient, k: int) -> None:
    results = search(client, demo_photo("banana"), k=k).json()["results"]
    assert len(results) == k


def test_category_filter_repeatable(client: TestClient) -> None:
    r = client.post(
        "/v1/search?category=Milk&category=juice&k=50",
        files={"image": ("q.jpg", demo_photo("banana"), "image/jpeg")},
    )
    results = r.json()["results"]
    assert {x["category"] for x in results} == {"Milk", "Juice"}  # case-insensitive match
    assert len(results) == 16  # 6 milks + 10 juices, all of them


def test_in_stock_filter(client: TestClient) -> None:
    inside = search(client, demo_photo("banana"), in_stock="true", k=100).json()["results"]
    out = search(client, demo_photo("banana"), in_stock="false", k=100).json()["results"]
    assert inside and all(x["in_stock"] for x in inside)
    assert out and not any(x["in_stock"] for x in out)
    assert len(inside) == 100  # enough in-stock products
    assert "golden-delicious-apple" in {x["product_id"] for x in out}  # sold out in the demo


def test_price_filters(client: TestClient) -> None:
    results = search(client, demo_photo("banana"), min_price=20, max_price=30, k=100).json()[
        "results"
    ]
    assert results
    assert all(20 <= x["price"] <= 30 for x in results)


def test_min_score_filter(client: TestClient) -> None:
    results = search(client, demo_photo("banana"), min_score=0.5, k=100).json()["results"]
    assert results and all(x["score"] >= 0.5 for x in results)
    assert len(results) < 100


def test_one_percent_filter_still_returns_k(client: TestClient) -> None:
    # 3 of 300 products are "Rare" and cost 999: k=3 must bring all three back.
    by_category = search(client, demo_photo("banana"), category="Rare", k=3).json()["results"]
    assert sorted(x["product_id"] for x in by_category) == sorted(RARE)
    by_price = search(client, demo_photo("banana"), min_price=990, k=3).json()["results"]
    assert sorted(x["product_id"] for x in by_price) == sorted(RARE)
    more = search(client, demo_photo("banana"), category="Rare", k=10).json()["results"]
    assert len(more) == 3  # never padded with products that fail the filter


def test_attribute_filter(client: TestClient) -> None:
    acme = search(client, demo_photo("banana"), attr="brand:acme", k=20).json()["results"]
    assert len(acme) == 20 and all(x["product_id"].startswith("synthetic-") for x in acme)
    r = client.post(
        "/v1/search?attr=brand:grocer&attr=brand:acme",  # the last value for a name wins
        files={"image": ("q.jpg", demo_photo("banana"), "image/jpeg")},
    )
    assert all(x["product_id"].startswith("synthetic-") for x in r.json()["results"])
    none = search(client, demo_photo("banana"), attr="brand:nobody").json()["results"]
    assert none == []
    bad = search(client, demo_photo("banana"), attr="brand")
    assert bad.status_code == 400 and "attr" in bad.json()["error"]["message"]


def test_combined_filters(client: TestClient) -> None:
    results = search(
        client,
        demo_photo("banana"),
        category="Juice",
        in_stock="true",
        max_price=35,
        k=20,
    ).json()["results"]
    assert results
    for x in results:
        assert x["category"] == "Juice" and x["in_stock"] and x["price"] <= 35


def _side_by_side(left: str, right: str) -> bytes:
    a = Image.open(BytesIO(demo_photo(left))).convert("RGB")
    b = Image.open(BytesIO(demo_photo(right))).convert("RGB")
    both = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), "white")
    both.paste(a, (0, 0))
    both.paste(b, (a.width, 0))
    return jpeg_bytes(both)


def test_crop_searches_the_region(client: TestClient) -> None:
    photo = _side_by_side("banana", "oatly-oat-milk")
    left = search(client, photo, crop="0,0,0.5,1").json()["results"][0]
    right = search(client, photo, crop="0.5,0,0.5,1").json()["results"][0]
    assert left["product_id"] == "banana"
    assert right["product_id"] == "oatly-oat-milk"


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"k": 0}, "k"),
        ({"k": 101}, "k"),
        ({"k": "ten"}, "k"),
        ({"in_stock": "maybe"}, "in_stock"),
        ({"min_price": "cheap"}, "min_price"),
        ({"min_price": 10, "max_price": 5}, "min_price"),
        ({"min_score": 2}, "min_score"),
        ({"crop": "0.5,0.5"}, "crop"),
        ({"crop": "0.5,0.5,0.6,0.2"}, "crop"),
    ],
)
def test_bad_parameters_are_400(client: TestClient, params: dict[str, object], needle: str) -> None:
    r = search(client, demo_photo("banana"), **params)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_parameter"
    assert needle in err["message"]


def test_missing_image_is_400(client: TestClient) -> None:
    for body in ({}, {"data": {"image": ""}}):
        r = client.post("/v1/search", **body)  # type: ignore[arg-type]
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_parameter"
        assert "image" in r.json()["error"]["message"]
    # A field that is no parameter at all is named as such (test_strict_params.py).
    r = client.post("/v1/search", data={"other": "x"})
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "unknown_parameter"


def test_not_an_image_is_415(client: TestClient) -> None:
    r = client.post("/v1/search", files={"image": ("a.jpg", b"hello, not a photo", "image/jpeg")})
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    bmp = BytesIO()
    Image.new("RGB", (8, 8)).save(bmp, "BMP")
    r = client.post("/v1/search", files={"image": ("a.bmp", bmp.getvalue(), "image/bmp")})
    assert r.status_code == 415
    assert "BMP" in r.json()["error"]["message"]


def test_truncated_image_is_422(client: TestClient) -> None:
    data = demo_photo("banana")
    r = client.post("/v1/search", files={"image": ("a.jpg", data[:600], "image/jpeg")})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "invalid_image"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "AVIF", "HEIF"])
def test_other_upload_formats(client: TestClient, fmt: str) -> None:
    if fmt == "HEIF":
        pillow_heif = pytest.importorskip("pillow_heif")
        pillow_heif.register_heif_opener()
    image = Image.open(BytesIO(demo_photo("kiwi")))
    out = BytesIO()
    try:
        image.save(out, fmt, quality=90)
    except (KeyError, OSError) as exc:
        pytest.skip(f"this Pillow cannot write {fmt}: {exc}")
    r = search(client, out.getvalue())
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["product_id"] == "kiwi"


def test_upload_size_limits_are_413(make_client: AppFactory, data_dir: Path) -> None:
    big = jpeg_bytes(Image.effect_noise((400, 400), 60), quality=100)
    with make_client(data_dir, max_image_bytes=len(big) - 1) as c:
        r = search(c, big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "too_large"
        assert search(c, demo_photo("banana")).status_code == 200
    with make_client(data_dir, max_request_bytes=50_000) as c:
        r = search(c, big + b"\0" * 60_000)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "too_large"


def test_chunked_upload_over_the_request_limit_is_413(
    make_client: AppFactory, data_dir: Path
) -> None:
    # No Content-Length: the body is counted as it arrives and reading stops at the limit.
    boundary = "shoplensboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()

    def body() -> Iterator[bytes]:
        yield head
        for _ in range(40):
            yield b"\xff" * 4096
        yield f"\r\n--{boundary}--\r\n".encode()

    with make_client(data_dir, max_request_bytes=64 * 1024) as c:
        r = c.post(
            "/v1/search",
            content=body(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )
    assert r.status_code == 413, r.text
    assert r.json()["error"]["code"] == "too_large"


def test_too_many_pixels_is_413(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, max_image_pixels=100 * 100) as c:
        r = search(c, demo_photo("banana"))  # 198 x 198
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "image_too_large"


def test_text_search_matches_words_without_a_text_model(client: TestClient) -> None:
    # The stand-in model embeds no text: words are matched (tests/service/test_word_search.py).
    r = client.get("/v1/search", params={"q": "green apple"})
    assert r.status_code == 200, r.text
    every = {x["product_id"] for x in r.json()["results"] if x["score"] > 0.5}
    assert "granny-smith-apple" in every  # "Granny Smith is a green apple..."
    r = client.get("/v1/search")
    assert r.status_code == 400
    assert r.json()["error"]["code"] == "bad_parameter"


def test_rate_limit_is_429(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, rate_limit_per_minute=2) as c:
        codes = [search(c, demo_photo("banana"), k=1).status_code for _ in range(2)]
        last = search(c, demo_photo("banana"), k=1)
    assert codes[:2] == [200, 200]
    assert last.status_code == 429
    assert last.json()["error"]["code"] == "rate_limited"
    assert last.headers["retry-after"]


def test_no_snapshot_yet_is_503_then_ready_when_published(
    make_client: AppFactory, tmp_path: Path, embedder: object
) -> None:
    from shoplens.config import Settings
    from shoplens.indexer.ops.build import run_index

    empty = tmp_path / "empty"
    with make_client(empty) as c:
        assert c.get("/healthz").status_code == 200
        r = c.get("/readyz")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        r = search(c, demo_photo("banana"))
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "not_ready"
        assert c.get("/v1/products/banana").status_code == 503
        # Publishing the first snapshot makes the running service ready, no restart.
        manifest = tmp_path / "small.csv"
        manifest.write_text(
            "product_id,title,category,image\n"
            + "".join(
                f"{p},{p.title()},Fruit,{DEMO}/images/{p}.jpg\n" for p in ("banana", "kiwi", "lime")
            ),
            encoding="utf-8",
        )
        run_index(Settings(data_dir=empty), manifest, embedder=embedder)  # type: ignore[arg-type]
        deadline = time.monotonic() + 30
        while c.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        ready = c.get("/readyz").json()
        assert ready["products"] == 3
        assert search(c, demo_photo("kiwi")).json()["results"][0]["product_id"] == "kiwi"


@pytest.mark.parametrize(
    ("method", "url", "kwargs"),
    [
        ("post", "/v1/search", {"content": b"\x00" * 100}),
        ("post", "/v1/search", {"data": {"image": "not a file"}}),
        ("post", "/v1/search", {"files": {"image": ("e.jpg", b"", "image/jpeg")}}),
        ("post", "/v1/search", {"files": {"image": ("x.svg", b"<svg></svg>", "image/svg")}}),
        ("post", "/v1/search?crop=nan,0,1,1", {"files": {"image": ("a", b"x", "image/jpeg")}}),
        ("post", "/v1/search?min_price=inf", {"files": {"image": ("a", b"x", "image/jpeg")}}),
        ("get", "/v1/search?q=" + "x" * 600, {}),
        ("get", "/v1/products/%00", {}),
        ("get", "/v1/products/" + "é" * 300, {}),
        ("get", "/v1/products/x/similar?k=1.5", {}),
        ("get", "/v1/images/%2e%2e?w=64", {}),
        ("get", "/v1/images/" + "a" * 5000, {}),
        ("delete", "/v1/products/x", {"headers": {"Authorization": "Basic abc"}}),
        ("put", "/v1/products/x", {"headers": {"Authorization": "Bearer"}}),
        ("get", "/demo/samples/%2fetc%2fpasswd", {}),
    ],
)
def test_odd_requests_never_500(
    client: TestClient, method: str, url: str, kwargs: dict[str, object]
) -> None:
    r = client.request(method.upper(), url, **kwargs)  # type: ignore[arg-type]
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert set(r.json()) == {"error"}
    assert {"code", "message"} <= set(r.json()["error"]) <= {"code", "message", "request_id"}
