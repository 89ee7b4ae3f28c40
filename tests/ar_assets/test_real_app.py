"""The AR routes through the real service app (``create_app``), lifespan and all."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shoplens.config import Settings

from .conftest import AUTH, TOKEN, upload
from .models import box_glb

pytestmark = pytest.mark.usefixtures("node_tools")


class StubEmbedder:
    """Enough of ImageEmbedder for the app to start; AR never embeds anything."""

    name = "stub"
    dim = 4

    def embed(self, images: Sequence[Any]) -> Any:
        out = np.zeros((len(images), self.dim), np.float32)
        out[:, 0] = 1.0
        return out


def test_ar_through_create_app(tmp_path: Path) -> None:
    create_app = pytest.importorskip("shoplens.service.app").create_app
    settings = Settings(data_dir=tmp_path / "data", admin_token=SecretStr(TOKEN))
    app = create_app(settings, embedder=StubEmbedder())
    with TestClient(app) as c:
        r = upload(c, "sku-real", box_glb())
        assert r.status_code == 201, r.text
        block = r.json()
        assert c.get(block["glb_url"]).content == box_glb()
        assert (block["placement"], block["anchoring"]) == ("floor", "plane-horizontal")
        assert c.get("/v1/products/sku-real/ar").json()["glb_url"] == block["glb_url"]
        blocks = c.app.state.ar.blocks(["sku-real", "other"], "http://testserver")  # type: ignore[attr-defined]
        assert set(blocks) == {"sku-real"}
        bad = upload(c, "sku-real", b"glTF" + b"\x00" * 20)
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "invalid_asset"
        assert "report" in bad.json()
        assert c.get("/ar/view/sku-real").status_code == 200
        assert c.get("/v1/products/nope/ar").json()["error"]["code"] == "not_found"
        assert c.delete("/v1/products/sku-real/ar", headers=AUTH).status_code == 204
