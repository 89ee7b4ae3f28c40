"""`POST /v1/preview`: the shopper's photo as a JPEG browsers can show, in the frame
search crops in (EXIF applied), with search's limits and error shapes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.service.conftest import AppFactory


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def _two_halves(width: int, height: int) -> Image.Image:
    """Left half red, right half blue: where the red ends up shows the orientation."""
    image = Image.new("RGB", (width, height), (30, 40, 220))
    image.paste((220, 30, 30), (0, 0, width // 2, height))
    return image


def _rgb(image: Image.Image, xy: tuple[int, int]) -> tuple[int, int, int]:
    r, g, b = image.convert("RGB").getpixel(xy)  # type: ignore[misc]
    return int(r), int(g), int(b)


def _preview(client: TestClient, data: bytes, query: str = "") -> Image.Image:
    r = client.post(f"/v1/preview{query}", files={"image": ("photo", data)})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    image = Image.open(io.BytesIO(r.content))
    assert image.format == "JPEG"
    assert not image.getexif()  # re-encoded from pixels: no metadata travels back
    return image


def test_heic_comes_back_as_a_jpeg(client: TestClient) -> None:
    heic = _encode(_two_halves(300, 200), "HEIF", quality=90)
    assert heic[4:12] == b"ftypheic"
    image = _preview(client, heic)
    assert image.size == (300, 200)
    assert _rgb(image, (40, 100))[0] > 150 and _rgb(image, (260, 100))[2] > 150


def test_exif_orientation_is_applied(client: TestClient) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    jpeg = _encode(_two_halves(300, 200), "JPEG", quality=92, exif=exif.tobytes())
    image = _preview(client, jpeg)
    # The stored left (red) half is the shown top half.
    assert image.size == (200, 300)
    top, bottom = _rgb(image, (100, 40)), _rgb(image, (100, 260))
    assert top[0] > 150 and top[2] < 100 and bottom[2] > 150, (top, bottom)


def test_w_caps_the_longer_side_and_never_upscales(client: TestClient) -> None:
    png = _encode(_two_halves(1000, 500), "PNG")
    assert _preview(client, png, "?w=256").size == (256, 128)
    assert _preview(client, png).size == (1000, 500)  # default 1024: not upscaled
    assert _preview(client, _encode(_two_halves(80, 60), "PNG"), "?w=2048").size == (80, 60)


@pytest.mark.parametrize(
    ("query", "body", "status", "code"),
    [
        ("", b"%PDF-1.4 not a photo", 415, "unsupported_media_type"),
        ("", b"\xff\xd8\xff\xe0" + b"\x00" * 64, 422, "invalid_image"),
        ("", b"", 422, "invalid_image"),
        ("?w=10", None, 400, "bad_parameter"),
        ("?w=99999", None, 400, "bad_parameter"),
        ("?w=abc", None, 400, "bad_parameter"),
    ],
)
def test_bad_input_gets_the_contract_error(
    client: TestClient, query: str, body: bytes | None, status: int, code: str
) -> None:
    data = body if body is not None else _encode(_two_halves(64, 64), "PNG")
    r = client.post(f"/v1/preview{query}", files={"image": ("photo", data)})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code


def test_no_image_field_is_a_400(client: TestClient) -> None:
    r = client.post("/v1/preview", files={"photo": ("photo", b"x")})
    assert r.status_code == 400
    assert "image" in r.json()["error"]["message"]


def test_search_limits_apply(make_client: AppFactory, data_dir: Path) -> None:
    png = _encode(_two_halves(100, 100), "PNG")
    with make_client(data_dir, max_image_pixels=5_000) as c:
        r = c.post("/v1/preview", files={"image": ("photo", png)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "image_too_large"
    with make_client(data_dir, max_image_bytes=len(png) - 1) as c:
        r = c.post("/v1/preview", files={"image": ("photo", png)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_listed_in_the_openapi_document(client: TestClient) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/preview"]["post"]
    assert "image/jpeg" in op["responses"]["200"]["content"]
    assert {"400", "413", "415", "422"} <= set(op["responses"])
