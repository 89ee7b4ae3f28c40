"""The AR routes through the real service app (``create_app``), lifespan and all."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

# The service tests' real app over a real indexed catalog ("banana" is one of its products).
from tests.service.conftest import (
    admin,
    built_data_dir,
    catalog_manifest,
    client,
    data_dir,
    embedder,
    indexed_catalogs,
    make_client,
    stand_in,
)

from .conftest import AUTH, upload
from .models import box_glb

pytestmark = pytest.mark.usefixtures("node_tools")

__all__ = [
    "admin",
    "built_data_dir",
    "catalog_manifest",
    "client",
    "data_dir",
    "embedder",
    "indexed_catalogs",
    "make_client",
    "stand_in",
]


def test_ar_through_create_app(client: TestClient) -> None:
    c = client
    r = upload(c, "banana", box_glb())
    assert r.status_code == 201, r.text
    block = r.json()
    assert c.get(block["glb_url"]).content == box_glb()
    assert (block["placement"], block["anchoring"]) == ("floor", "plane-horizontal")
    assert c.get("/v1/products/banana/ar").json()["glb_url"] == block["glb_url"]
    blocks = c.app.state.ar.blocks(["banana", "other"], "http://testserver")  # type: ignore[attr-defined]
    assert set(blocks) == {"banana"}
    bad = upload(c, "banana", b"glTF" + b"\x00" * 20)
    assert bad.status_code == 422
    assert bad.json()["error"]["code"] == "invalid_asset"
    assert "report" in bad.json()
    assert c.get("/ar/view/banana").status_code == 200
    assert c.get("/v1/products/nope/ar").json()["error"]["code"] == "not_found"
    assert c.delete("/v1/products/banana/ar", headers=AUTH).status_code == 204
