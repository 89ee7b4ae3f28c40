"""The AR HTTP routes on a small app holding only them (plus the service's error mapping)."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoplens.ar_assets import tools
from shoplens.config import Settings

from .conftest import AUTH, make_app, upload
from .models import box_glb, gltf_zip, mutate, variants_glb

pytestmark = pytest.mark.usefixtures("node_tools")


def _name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def test_upload_glb_then_download_byte_for_byte(client: TestClient) -> None:
    data = box_glb()
    r = upload(client, "sku-1", data, placement="table")
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["report"]["ok"] is True
    assert body["placement"] == "table"
    assert body["dimensions_m"] == {"x": 0.3, "y": 0.3, "z": 0.3}
    assert body["triangles"] == 12
    assert body["bytes"] == len(data)
    assert body["variants"] == []
    for key in ("glb_url", "glb_mobile_url", "usdz_url", "viewer_url", "android_intent_url"):
        assert body[key].startswith("http://testserver/") or body[key].startswith("intent://")
    assert _name(body["glb_url"]) == hashlib.sha256(data).hexdigest() + ".glb"
    got = client.get(body["glb_url"])
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-type"] == "model/gltf-binary"
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    usdz = client.get(body["usdz_url"])
    assert usdz.headers["content-type"] == "model/vnd.usdz+zip"
    assert usdz.content[:4] == b"PK\x03\x04"
    # GET answers the same block (without the report).
    block = client.get("/v1/products/sku-1/ar").json()
    assert {k: v for k, v in body.items() if k != "report"} == block
    intent = block["android_intent_url"]
    assert intent.startswith("intent://arvr.google.com/scene-viewer/1.0?file=http%3A%2F%2F")
    assert "mode=ar_preferred" in intent and "package=com.google.ar.core" in intent
    assert intent.endswith(";end;") and "S.browser_fallback_url=" in intent


def test_public_base_url_is_used(ar_settings: Settings) -> None:
    s = ar_settings.model_copy(update={"public_base_url": "https://shop.example/"})
    with TestClient(make_app(s)) as c:
        body = upload(c, "sku-1", box_glb(), placement="wall").json()
    assert body["glb_url"].startswith("https://shop.example/ar/files/")
    assert "enable_vertical_placement=true" in body["android_intent_url"]


def test_zip_upload_is_packed_and_kept(client: TestClient, ar_settings: Settings) -> None:
    data = gltf_zip()
    r = upload(client, "sku-z", data, filename="model.zip")
    assert r.status_code == 201, r.text
    body = r.json()
    assert "ZIP_PACKED" in {i["code"] for i in body["report"]["infos"]}
    packed = client.get(body["glb_url"]).content
    assert packed[:4] == b"glTF"
    zip_sha = hashlib.sha256(data).hexdigest()
    assert (ar_settings.assets_dir / f"{zip_sha}.zip").read_bytes() == data


def test_invalid_upload_keeps_the_previous_asset(client: TestClient, ar_settings: Settings) -> None:
    first = upload(client, "sku-2", box_glb()).json()
    stored = sorted(p.name for p in ar_settings.assets_dir.iterdir() if p.is_file())

    def broken(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["accessors"][1]["count"] = 999_999
        return doc, blob

    r = upload(client, "sku-2", mutate(broken, size=0.5))
    assert r.status_code == 422
    body = r.json()
    assert body["error"]["code"] == "invalid_asset"
    assert "ACCESSOR" in body["error"]["message"]
    assert any(e["pointer"] == "/accessors/1" for e in body["report"]["errors"])
    again = client.get("/v1/products/sku-2/ar").json()
    assert again["glb_url"] == first["glb_url"]
    assert client.get(first["glb_url"]).status_code == 200
    # Nothing of the refused upload was written (temporaries are gone too).
    assert sorted(p.name for p in ar_settings.assets_dir.iterdir() if p.is_file()) == stored
    assert list((ar_settings.assets_dir / "tmp").iterdir()) == []


def test_unsupported_media_and_limits(client: TestClient, ar_settings: Settings) -> None:
    r = upload(client, "sku-3", b"\x89PNG\r\n\x1a\n not a model")
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"
    small = ar_settings.model_copy(update={"max_asset_bytes": 1000})
    with TestClient(make_app(small)) as c:
        r = upload(c, "sku-3", box_glb())
    assert r.status_code == 413
    assert r.json()["error"]["code"] == "too_large"


@pytest.mark.parametrize(
    ("pid", "form", "status"),
    [
        ("bad id!", {}, 400),
        ("x" * 129, {}, 400),
        ("ok", {"placement": "ceiling"}, 400),
        ("ok", {"variant": "no spaces"}, 400),
    ],
)
def test_bad_parameters(client: TestClient, pid: str, form: dict[str, str], status: int) -> None:
    r = upload(client, pid, box_glb(), **form)
    assert r.status_code == status
    assert r.json()["error"]["code"] == "bad_parameter"


def test_admin_is_required(client: TestClient, tmp_path: Any) -> None:
    r = client.put("/v1/products/p/ar", files={"file": ("m.glb", box_glb())})
    assert r.status_code == 401
    r = client.delete("/v1/products/p/ar", headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    with TestClient(make_app(Settings(data_dir=tmp_path / "d2"))) as c:
        r = c.put("/v1/products/p/ar", files={"file": ("m.glb", box_glb())}, headers=AUTH)
    assert r.status_code == 403


def test_range_etag_and_304(client: TestClient) -> None:
    data = box_glb()
    url = upload(client, "sku-4", data).json()["glb_url"]
    full = client.get(url)
    etag = full.headers["etag"]
    assert etag == '"' + hashlib.sha256(data).hexdigest() + '"'
    assert full.headers["accept-ranges"] == "bytes"
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    assert client.get(url, headers={"If-None-Match": f'"x", W/{etag}'}).status_code == 304
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == data[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(data)}"
    tail = client.get(url, headers={"Range": "bytes=-8"})
    assert tail.status_code == 206 and tail.content == data[-8:]
    open_end = client.get(url, headers={"Range": f"bytes={len(data) - 4}-"})
    assert open_end.content == data[-4:]
    bad = client.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert bad.status_code == 416
    assert bad.headers["content-range"] == f"bytes */{len(data)}"
    stale = client.get(url, headers={"Range": "bytes=0-3", "If-Range": '"other"'})
    assert stale.status_code == 200 and stale.content == data
    head = client.head(url)
    assert head.status_code == 200 and head.headers["content-length"] == str(len(data))


@pytest.mark.parametrize(
    "name", ["x.glb", "../../etc/passwd", "A" * 64 + ".glb", "0" * 64 + ".obj", "0" * 64 + ".glb"]
)
def test_file_names_are_strict(client: TestClient, name: str) -> None:
    assert client.get(f"/ar/files/{name}").status_code == 404


def test_variants_delete_and_garbage_collection(client: TestClient, ar_settings: Settings) -> None:
    a = upload(client, "sku-5", box_glb()).json()
    b = upload(client, "sku-5", box_glb(size=0.4), variant="large").json()
    shared = upload(client, "sku-6", box_glb()).json()  # same bytes as sku-5's default
    block = client.get("/v1/products/sku-5/ar").json()
    assert [v["name"] for v in block["variants"]] == ["large"]
    assert block["variants"][0]["source"] == "upload"
    assert block["variants"][0]["glb_url"] == b["glb_url"]
    assert client.get("/v1/products/sku-5/ar?variant=large").json()["dimensions_m"]["x"] == 0.4
    # Replacing sku-5's default must not delete a file sku-6 still uses.
    upload(client, "sku-5", box_glb(size=0.35))
    assert client.get(shared["glb_url"]).status_code == 200
    assert client.delete("/v1/products/sku-5/ar", headers=AUTH).status_code == 204
    assert client.get("/v1/products/sku-5/ar").status_code == 404
    assert client.get(b["glb_url"]).status_code == 404  # collected
    assert client.get(a["glb_url"]).status_code == 200  # still sku-6's
    assert client.delete("/v1/products/sku-5/ar", headers=AUTH).status_code == 404
    leftovers = [p for p in ar_settings.assets_dir.iterdir() if p.is_file()]
    names = {p.name for p in leftovers}
    assert all(re.fullmatch(r"[0-9a-f]{64}\.(glb|usdz|zip)", n) for n in names)


def test_blocks_for_results(client: TestClient) -> None:
    upload(client, "sku-7", box_glb())
    ar = client.app.state.ar  # type: ignore[attr-defined]
    blocks = ar.blocks(["sku-7", "no-model", "bad id!"], "https://cdn.example")
    assert list(blocks) == ["sku-7"]
    assert blocks["sku-7"]["glb_url"].startswith("https://cdn.example/ar/files/")


def test_material_variants_are_listed(client: TestClient) -> None:
    body = upload(client, "sku-8", variants_glb()).json()
    assert [(v["name"], v["source"]) for v in body["variants"]] == [
        ("Blue", "KHR_materials_variants"),
        ("Red", "KHR_materials_variants"),
    ]


def test_viewer_page_and_script(client: TestClient) -> None:
    block = upload(client, "sku-9", box_glb(), placement="wall").json()
    page = client.get("/ar/view/sku-9")
    assert page.status_code == 200
    html = page.text
    assert f'src="{block["glb_mobile_url"]}"' in html
    assert f'ios-src="{block["usdz_url"]}"' in html
    assert 'ar-modes="webxr scene-viewer quick-look"' in html
    assert 'ar-placement="wall"' in html and "camera-controls" in html
    assert 'data-anchoring="plane-vertical"' in html and block["anchoring"] == "plane-vertical"
    assert 'slot="ar-button"' in html and "View in your space" in html
    assert 'src="/ar/static/model-viewer.min.js"' in html
    assert re.search(r"https?://(?!testserver)", html.replace(block["glb_mobile_url"], "")) is None
    js = client.get("/ar/static/model-viewer.min.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    assert 'meshoptDecoderLocation: "/ar/static/meshopt_decoder.js"' in html
    assert client.get("/ar/static/meshopt_decoder.js").status_code == 200
    wasm = client.get("/ar/static/draco/draco_decoder.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert client.get("/ar/static/basis/basis_transcoder.js").status_code == 200
    assert client.get("/ar/static/draco/README.md").status_code == 404
    assert client.get("/ar/static/../routes.py").status_code == 404
    assert client.get("/ar/view/unknown").status_code == 404


def test_mobile_variant_is_valid_and_not_larger(client: TestClient, tmp_path: Any) -> None:
    from .models import checker_png

    data = box_glb(texture=checker_png(1024))  # big enough for WebP + meshopt to pay off
    body = upload(client, "sku-10", data).json()
    mobile = client.get(body["glb_mobile_url"]).content
    assert len(mobile) <= len(data)
    assert body["glb_mobile_url"] != body["glb_url"]
    p = tmp_path / "mobile.glb"
    p.write_bytes(mobile)
    from shoplens.ar_assets.report import Report
    from shoplens.ar_assets.validation.khronos import run_khronos

    rep = Report()
    result = run_khronos(p, rep)
    assert result is not None and result["issues"]["numErrors"] == 0
    assert tools.find_tools().validator is not None


def test_viewer_uses_the_catalog_title_read_only(ar_settings: Settings) -> None:
    class Product:
        title = "Red <Box>"
        url = "https://shop.example/red-box"

    class Live:
        def product(self, product_id: str) -> tuple[Product, list[object]]:
            return Product(), []

    app = make_app(ar_settings)
    app.state.live = Live()
    with TestClient(app) as c:
        upload(c, "sku-11", box_glb())
        html = c.get("/ar/view/sku-11").text
    assert '<h1 id="title">Red &lt;Box&gt;</h1>' in html
    assert 'href="https://shop.example/red-box"' in html
