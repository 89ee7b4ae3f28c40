"""Search results and products carry the AR part's block for products that have a 3D model."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from tests.service.helpers import demo_photo, search


def test_results_and_product_carry_the_ar_block(client: TestClient, admin: dict[str, str]) -> None:
    pytest.importorskip("shoplens.ar_assets.routes")
    from tests.ar_assets.models import box_glb

    r = client.put(
        "/v1/products/banana/ar",
        files={"file": ("banana.glb", box_glb(), "model/gltf-binary")},
        data={"placement": "table"},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    uploaded = {k: v for k, v in r.json().items() if k != "report"}
    assert (uploaded["placement"], uploaded["anchoring"]) == ("table", "plane-horizontal")

    results = search(client, demo_photo("banana")).json()["results"]
    assert results[0]["product_id"] == "banana"
    assert results[0]["ar"] == uploaded
    assert results[0]["ar"]["viewer_url"].startswith("http://testserver/ar/view/banana")
    assert all(x["ar"] is None for x in results[1:])  # only banana has a model

    product = client.get("/v1/products/banana").json()
    assert product["ar"] == uploaded
    similar = client.get("/v1/products/honeydew-melon/similar", params={"k": 100}).json()
    assert next(x for x in similar["results"] if x["product_id"] == "banana")["ar"] == uploaded
