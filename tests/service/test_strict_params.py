"""Unknown query parameters and form fields are a 400 ``unknown_parameter`` on every
route of the versioned API (API v1.1), through the real app; pages, files and
probes stay lenient."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.service.conftest import AppFactory
from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo

PHOTO = {"image": ("q.jpg", demo_photo("banana"), "image/jpeg")}


def refused(r: Any, *needles: str) -> str:
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "unknown_parameter", err
    for needle in needles:
        assert needle in err["message"], err["message"]
    message: str = err["message"]
    return message


def test_a_filter_sent_as_a_form_field(client: TestClient) -> None:
    r = client.post("/v1/search", data={"category": "Milk"}, files=PHOTO)
    message = refused(r, "form field 'category'", "POST /v1/search")
    assert "filters are query parameters (?category=...)" in message
    # The same filter in the query string is what works.
    r = client.post("/v1/search", params={"category": "Milk"}, files=PHOTO)
    assert r.status_code == 200 and {x["category"] for x in r.json()["results"]} == {"Milk"}
    # Sent both ways, the form field is still refused: it would be silently ignored.
    r = client.post("/v1/search?category=Milk", data={"in_stock": "true"}, files=PHOTO)
    refused(r, "form field 'in_stock'", "(?in_stock=...)")


@pytest.mark.parametrize(
    ("method", "url", "needles"),
    [
        ("get", "/v1/search?q=milk&catgory=Milk", ["'catgory'", "did you mean 'category'"]),
        ("get", "/v1/search?q=milk&limit=3", ["'limit'", "GET /v1/search", "k, category"]),
        ("get", "/v1/products/banana?verbose=1", ["'verbose'", "takes no parameters"]),
        ("get", "/v1/products/banana/similar?kk=3", ["'kk'", "GET /v1/products/{product_id}/"]),
        ("get", "/v1/products/banana/ar?varient=red", ["did you mean 'variant'"]),
        ("get", "/v1/images/abc?width=64", ["'width'", "query parameters: w"]),
        ("get", "/v1/admin/jobs/abc?verbose=1", ["'verbose'"]),
        ("delete", "/v1/products/banana?force=1", ["'force'", "DELETE /v1/products/{product_id}"]),
    ],
)
def test_misspelt_query_parameters(
    client: TestClient, admin: dict[str, str], method: str, url: str, needles: list[str]
) -> None:
    r = client.request(method.upper(), url, headers=admin)
    refused(r, "query parameter", *needles)


def test_photo_search_query_typo_and_several_unknown(client: TestClient) -> None:
    refused(search(client, demo_photo("banana"), in_stok="true"), "did you mean 'in_stock'")
    r = search(client, demo_photo("banana"), a="1", b="2", c="3")
    refused(r, "query parameter 'a'", "(and 2 more unknown)")


def test_unknown_fields_on_admin_uploads_store_nothing(
    client: TestClient, admin: dict[str, str]
) -> None:
    photo = ("p.jpg", jpeg_bytes(synthetic_photo(1)), "image/jpeg")
    r = client.put(
        "/v1/products/new-one",
        data={"meta": json.dumps({"title": "New"}), "price": "9.50"},
        files={"image": photo},
        headers=admin,
    )
    refused(r, "form field 'price'", "PUT /v1/products/{product_id}", "form fields: meta, image")
    assert client.get("/v1/products/new-one").status_code == 404  # nothing stored
    r = client.put("/v1/products/new-one?title=New", files={"image": photo}, headers=admin)
    refused(r, "query parameter 'title'")
    # The AR upload: placement belongs to its form, variant of DELETE to the query.
    r = client.put(
        "/v1/products/banana/ar?placement=wall",
        files={"file": ("m.glb", b"glTF", "model/gltf-binary")},
        headers=admin,
    )
    refused(r, "'placement' is a form field")
    r = client.request("DELETE", "/v1/products/banana/ar", data={"variant": "red"}, headers=admin)
    refused(r, "form field 'variant'", "(?variant=...)")
    r = client.put(
        "/v1/products/banana/ar",
        data={"placment": "wall"},
        files={"file": ("m.glb", b"glTF", "model/gltf-binary")},
        headers=admin,
    )
    refused(r, "did you mean 'placement'")


def test_admin_reindex_takes_json_only(
    client: TestClient, admin: dict[str, str], tmp_path: Path
) -> None:
    r = client.post("/v1/admin/reindex", data={"manifest": "x.csv"}, headers=admin)
    refused(r, "form field 'manifest'", "JSON body")
    r = client.post("/v1/admin/reindex?prune=true", json={"manifest": "x.csv"}, headers=admin)
    refused(r, "query parameter 'prune'", "a JSON body")


def test_every_parameter_declared_is_still_accepted(client: TestClient) -> None:
    r = client.post(
        "/v1/search",
        params={
            "k": 5,
            "category": ["Milk", "Juice"],
            "in_stock": "true",
            "min_price": 1,
            "max_price": 100,
            "min_score": -1,
            "attr": "brand:grocer",
            "crop": "0,0,1,1",
            "q": "milk",
        },
        files=PHOTO,
    )
    assert r.status_code == 200, r.text
    r = client.get(
        "/v1/products/banana/similar",
        params={"k": 3, "category": "Milk", "in_stock": "true", "min_score": -1},
    )
    assert r.status_code == 200, r.text
    image = client.get("/v1/products/banana").json()["images"][0]["image_id"]
    assert client.get(f"/v1/images/{image}", params={"w": 64}).status_code == 200


def test_unknown_names_are_checked_before_the_rest(client: TestClient) -> None:
    # A misspelt field is named as such, not reported as the missing image it caused.
    refused(client.post("/v1/search", data={"imgae": "x"}), "form field 'imgae'")
    # Admin routes: checked before the token (the names are public, in /openapi.json).
    refused(client.delete("/v1/products/banana?force=1"), "'force'")


def test_the_upload_limits_still_apply(make_client: AppFactory, data_dir: Path) -> None:
    big = jpeg_bytes(synthetic_photo(3, size=600), quality=100)
    with make_client(data_dir, max_request_bytes=len(big) // 2) as c:
        r = c.post("/v1/search", data={"category": "Milk"}, files={"image": ("a.jpg", big)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    with make_client(data_dir, max_image_bytes=len(big) - 1) as c:
        r = c.post("/v1/search", data={"category": "Milk"}, files={"image": ("a.jpg", big)})
        refused(r, "form field 'category'")  # names are checked before the photo is read
        r = c.post("/v1/search", files={"image": ("a.jpg", big)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    "url",
    [
        "/?utm_source=newsletter",
        "/healthz?probe=1",
        "/readyz?probe=1",
        "/metrics?x=1",
        "/openapi.json?v=2",
        "/docs?x=1",
        "/demo/samples?x=1",
    ],
)
def test_pages_files_and_probes_stay_lenient(client: TestClient, url: str) -> None:
    assert client.get(url).status_code == 200
