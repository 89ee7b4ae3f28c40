"""Per-route body caps: 3D models get the asset cap, everything else the request cap."""

from __future__ import annotations

import os
from pathlib import Path

from tests.service.conftest import AppFactory
from tests.service.helpers import ADMIN_TOKEN, search


def test_ar_upload_gets_the_asset_cap_not_the_request_cap(
    make_client: AppFactory, data_dir: Path
) -> None:
    payload = os.urandom(300_000)  # over the request cap, under the asset cap
    with make_client(data_dir, max_request_bytes=100_000, max_asset_bytes=2_000_000) as c:
        photo = search(c, payload)
        assert photo.status_code == 413
        assert "SHOPLENS_MAX_REQUEST_BYTES" in photo.json()["error"]["message"]

        model = c.put(
            "/v1/products/kiwi/ar",
            files={"file": ("model.glb", payload, "model/gltf-binary")},
            data={"placement": "table"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        # Read in full and judged by its content (random bytes are no glTF), not cut off.
        assert model.status_code == 415, model.text


def test_ar_upload_over_the_asset_cap_is_413(make_client: AppFactory, data_dir: Path) -> None:
    payload = os.urandom(3_500_000)
    with make_client(data_dir, max_request_bytes=100_000, max_asset_bytes=2_000_000) as c:
        r = c.put(
            "/v1/products/kiwi/ar",
            files={"file": ("model.glb", payload, "model/gltf-binary")},
            data={"placement": "table"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
    assert r.status_code == 413, r.text
    assert "SHOPLENS_MAX_ASSET_BYTES" in r.json()["error"]["message"]
