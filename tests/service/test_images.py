"""GET /v1/images/{image_id}: phone-sized, WebP/JPEG by Accept, cacheable."""

from __future__ import annotations

from io import BytesIO

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.service.helpers import demo_photo, search


@pytest.fixture
def image_url(client: TestClient) -> str:
    url: str = search(client, demo_photo("banana")).json()["results"][0]["image_url"]
    return url


def test_webp_when_accepted_else_jpeg(client: TestClient, image_url: str) -> None:
    webp = client.get(image_url, headers={"Accept": "image/avif,image/webp,*/*"})
    assert webp.status_code == 200
    assert webp.headers["content-type"] == "image/webp"
    assert Image.open(BytesIO(webp.content)).format == "WEBP"
    jpeg = client.get(image_url, headers={"Accept": "image/jpeg,*/*"})
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(BytesIO(jpeg.content)).format == "JPEG"
    refused = client.get(image_url, headers={"Accept": "image/webp;q=0, image/*"})
    assert refused.headers["content-type"] == "image/jpeg"
    for r in (webp, jpeg):
        assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert r.headers["vary"] == "Accept"
        assert r.headers["etag"].startswith('"')
    assert webp.headers["etag"] != jpeg.headers["etag"]


def test_width_is_capped_never_upscaled(client: TestClient, image_url: str) -> None:
    small = client.get(image_url, params={"w": 64}, headers={"Accept": "image/jpeg"})
    assert Image.open(BytesIO(small.content)).size == (64, 64)  # square demo photo
    default = client.get(image_url, headers={"Accept": "image/jpeg"})
    assert Image.open(BytesIO(default.content)).width == 198  # the stored photo is smaller
    for w in (31, 1025, "wide"):
        r = client.get(image_url, params={"w": w})
        assert r.status_code == 400
        assert "w" in r.json()["error"]["message"]


def test_etag_gives_304(client: TestClient, image_url: str) -> None:
    first = client.get(image_url, params={"w": 128}, headers={"Accept": "image/webp"})
    etag = first.headers["etag"]
    again = client.get(
        image_url, params={"w": 128}, headers={"Accept": "image/webp", "If-None-Match": etag}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    other = client.get(
        image_url, params={"w": 256}, headers={"Accept": "image/webp", "If-None-Match": etag}
    )
    assert other.status_code == 200  # another width is another rendition
    # Cached on disk: the second rendering is the same bytes.
    repeat = client.get(image_url, params={"w": 128}, headers={"Accept": "image/webp"})
    assert repeat.content == first.content


def test_unknown_image_is_404(client: TestClient) -> None:
    for image_id in ("0" * 24, "../../etc/passwd", "x"):
        r = client.get(f"/v1/images/{image_id}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
