"""Upload limits: body cap enforced while streaming, per-image bytes and pixels,
format from the bytes only, photos stored re-encoded, never as sent."""

from __future__ import annotations

import io
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin
from starlette.testclient import TestClient

from tests.ar_assets.models import box_glb
from tests.hardening.conftest import AppFactory
from tests.hardening.server import Server
from tests.service.helpers import demo_photo, search, synthetic_photo

TWO_GB = 2 * 1024**3


@pytest.fixture(scope="module")
def server(hardening_built: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    import shutil

    work = tmp_path_factory.mktemp("uploads-server")
    shutil.copytree(hardening_built, work / "data")
    srv = Server(work / "data", work / "server.log").start()
    try:
        yield srv
    finally:
        srv.kill()


def _read_status(sock: socket.socket) -> tuple[int, bytes]:
    data = b""
    sock.settimeout(10)
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data


def test_declared_2gb_upload_is_refused_before_the_body(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            + f"Content-Length: {TWO_GB}\r\n\r\n".encode()
        )
        status, head = _read_status(s)
    assert status == 413, head[:500]
    assert b"too_large" in head or b"content-length" in head.lower()


def test_chunked_2gb_upload_is_cut_off_early(server: Server) -> None:
    """Stream a never-ending chunked body: the answer comes after ~the limit, not 2 GB."""
    rss_before = server.rss_bytes()
    chunk = b"\x00" * (1 << 20)
    sent = 0
    status = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=xyz\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        part = b'--xyz\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n\r\n'
        s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        frame = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
        s.settimeout(10)
        deadline = time.monotonic() + 120
        while sent < TWO_GB and time.monotonic() < deadline:
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                break  # the answer is there
            try:
                s.sendall(frame)
            except OSError:  # timeout or reset: the server stopped reading
                break
            sent += len(chunk)
        status, _ = _read_status(s)
    assert status == 413
    assert sent < 200 * (1 << 20), f"{sent} bytes were read before the refusal"
    assert server.rss_bytes() - rss_before < 150 * (1 << 20)


def _jpeg(size: int, quality: int = 95) -> bytes:
    out = io.BytesIO()
    synthetic_photo(3, size=size).save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_per_image_byte_limit(make_client: AppFactory, data_dir: Path) -> None:
    big = _jpeg(900)
    with make_client(data_dir, max_image_bytes=len(big) - 1) as c:
        r = search(c, big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "too_large"
        assert search(c, demo_photo("banana")).status_code == 200


def test_pixel_limit_refuses_before_decoding(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, max_image_pixels=100 * 100) as c:
        r = search(c, _jpeg(200))
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "image_too_large"


@pytest.mark.parametrize(
    ("filename", "ctype"),
    [("photo.gif", "image/gif"), ("x.exe", "application/octet-stream"), ("blob", "text/html")],
)
def test_declared_name_and_type_are_not_trusted(
    client: TestClient, filename: str, ctype: str
) -> None:
    png = io.BytesIO()
    Image.open(io.BytesIO(demo_photo("banana"))).save(png, "PNG")
    ok = client.post("/v1/search", files={"image": (filename, png.getvalue(), ctype)})
    assert ok.status_code == 200
    assert ok.json()["results"][0]["product_id"] == "banana"
    fake = client.post(
        "/v1/search", files={"image": ("photo.jpg", b"<svg onload=alert(1)>", "image/jpeg")}
    )
    assert fake.status_code == 415
    assert fake.json()["error"]["code"] == "unsupported_media_type"


def test_photos_are_stored_re_encoded_never_as_sent(
    client: TestClient, admin: dict[str, str], data_dir: Path
) -> None:
    marker = b"SHOPLENS-MARKER-7f3a9c"
    info = PngImagePlugin.PngInfo()
    info.add_text("comment", marker.decode())
    exif = Image.Exif()
    exif[0x010E] = marker.decode()  # ImageDescription
    out = io.BytesIO()
    synthetic_photo(11, size=200).save(out, "PNG", pnginfo=info, exif=exif)
    sent = out.getvalue()
    assert marker in sent
    r = client.put(
        "/v1/products/reencoded",
        data={"meta": '{"title": "re-encoded"}'},
        files={"image": ("a.png", sent, "image/png")},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    image_url = r.json()["images"][0]["image_url"]
    served = client.get(image_url.replace("http://testserver", "")).content
    assert marker not in served
    for p in data_dir.rglob("*"):
        if p.is_file() and p.stat().st_size < 50_000_000:
            assert marker not in p.read_bytes(), f"the upload's bytes were stored as sent in {p}"


def test_ar_upload_byte_limit(
    make_client: AppFactory, data_dir: Path, admin: dict[str, str]
) -> None:
    glb = box_glb()
    with make_client(data_dir, max_asset_bytes=len(glb) - 1) as c:
        r = c.put(
            "/v1/products/banana/ar",
            files={"file": ("m.glb", glb, "model/gltf-binary")},
            headers=admin,
        )
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"
