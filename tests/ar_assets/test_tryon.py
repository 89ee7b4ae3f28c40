"""Try-on over HTTP: ``tryon_url`` in the AR block, the page, the libraries it loads from
our own origin, and the placement help in the upload report (``placement.py``)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from shoplens.ar_assets import tools
from shoplens.ar_assets.placement import fit_for
from shoplens.ar_assets.tryon import LIB_FILES

from .conftest import upload
from .models import box_glb, variants_glb
from .wearables import glasses_glb, hat_glb, watch_glb


def _config(html: str) -> dict[str, Any]:
    m = re.search(r'<script type="application/json" id="tryon-config">(.*?)</script>', html, re.S)
    assert m, html[:500]
    out: dict[str, Any] = json.loads(m.group(1))
    return out


def _codes(report: dict[str, Any], severity: str = "warnings") -> list[str]:
    return [i["code"] for i in report[severity]]


def test_tryon_url_only_for_worn_placements(client: TestClient) -> None:
    face = upload(client, "glasses-1", glasses_glb(), placement="face").json()
    assert face["tryon_url"] == "http://testserver/ar/try/glasses-1"
    floor = upload(client, "box-1", box_glb(), placement="floor").json()
    assert floor["tryon_url"] is None
    assert client.get("/v1/products/box-1/ar").json()["tryon_url"] is None
    # A named upload variant keeps its own link; a material variant opens on it.
    upload(client, "glasses-1", glasses_glb(0.13), placement="face", variant="narrow")
    block = client.get("/v1/products/glasses-1/ar").json()
    assert [v["tryon_url"] for v in block["variants"]] == [
        "http://testserver/ar/try/glasses-1?variant=narrow"
    ]
    shoe = upload(client, "shoe-1", variants_glb(), placement="foot").json()
    assert [v["tryon_url"] for v in shoe["variants"]] == [
        "http://testserver/ar/try/shoe-1?material_variant=Blue",
        "http://testserver/ar/try/shoe-1?material_variant=Red",
    ]


def test_page_carries_the_fit_and_loads_only_our_origin(client: TestClient) -> None:
    block = upload(client, "watch-1", watch_glb(), placement="wrist").json()
    page = client.get("/ar/try/watch-1?mode=photo&material_variant=Gold")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    cfg = _config(page.text)
    assert cfg["placement"] == "wrist" and cfg["mode"] == "photo"
    assert cfg["model_url"] == block["glb_mobile_url"]
    assert cfg["fit"] == block["report"]["stats"]["tryon"]
    assert cfg["fit"]["kind"] == "watch" and cfg["material_variant"] == "Gold"
    assert cfg["tracker"]["script"] == "/ar/lib/@mediapipe/hands/hands.js"
    # Every script, style and library path is on our origin.
    html = page.text.replace(block["glb_mobile_url"], "").replace(block["viewer_url"], "")
    assert re.search(r"https?://", html) is None
    for src in re.findall(r'(?:src|href)="([^"]+)"', page.text):
        if src.startswith("/ar/static/"):
            assert client.get(src).status_code == 200, src
    # The viewer page links to the try-on page.
    assert 'href="http://testserver/ar/try/watch-1"' in client.get("/ar/view/watch-1").text


def test_page_errors(client: TestClient) -> None:
    upload(client, "box-2", box_glb(), placement="table")
    r = client.get("/ar/try/box-2")
    assert r.status_code == 404 and "nothing to wear" in r.json()["error"]["message"]
    assert client.get("/ar/try/nobody").status_code == 404
    assert client.get("/ar/try/bad%20id").status_code == 400
    upload(client, "hat-1", hat_glb(), placement="head")
    r = client.get("/ar/try/hat-1?mode=video")
    assert r.status_code == 400 and r.json()["error"]["code"]
    assert client.get("/ar/try/hat-1?variant=nope").status_code == 404
    assert client.get("/ar/try/hat-1").status_code == 200
    assert client.get("/ar/view/box-2").text.count('id="tryon"') == 0


def test_libraries_are_an_allow_list(client: TestClient) -> None:
    if tools.find_tools().node_modules is None:
        pytest.skip("node_modules is not installed")
    js = client.get("/ar/lib/three/build/three.module.min.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    wasm = client.get("/ar/lib/@mediapipe/face_mesh/face_mesh_solution_simd_wasm_bin.wasm")
    assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
    assert client.get("/ar/lib/@mediapipe/hands/hand_landmark_full.tflite").status_code == 200
    # Pose's heavy model is not served, nor anything else of node_modules.
    assert "@mediapipe/pose/pose_landmark_heavy.tflite" not in LIB_FILES
    for name in (
        "@mediapipe/pose/pose_landmark_heavy.tflite",
        "three/package.json",
        "gltf-validator/index.js",
        "three/build/../../gltf-validator/index.js",
        "%2e%2e/%2e%2e/pyproject.toml",
    ):
        r = client.get(f"/ar/lib/{name}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", name


def test_libraries_missing_is_a_clear_404(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("SHOPLENS_NODE_MODULES", str(tmp_path))
    monkeypatch.setattr(tools, "_candidate_dirs", lambda env, cwd: [tmp_path])
    r = client.get("/ar/lib/three/build/three.module.min.js")
    assert r.status_code == 404 and "install-node-tools" in r.json()["error"]["message"]


def test_report_says_how_it_is_worn(client: TestClient) -> None:
    report = upload(client, "watch-2", watch_glb(), placement="wrist").json()["report"]
    fit = report["stats"]["tryon"]
    assert fit["kind"] == "watch" and fit["forward_axis"] == "+z"
    assert "wrist" in fit["landmark"] and "metres" in fit["scale"]
    assert "TRYON_PLACEMENT" in _codes(report, "infos")
    assert not [c for c in _codes(report) if c.startswith("TRYON_")]
    glasses = upload(client, "glasses-2", glasses_glb(), placement="face").json()["report"]
    assert glasses["stats"]["tryon"]["kind"] == "glasses"
    assert "63 mm" in glasses["stats"]["tryon"]["scale"]
    assert not [c for c in _codes(glasses) if c.startswith("TRYON_")]
    # A floor item gets no try-on help.
    assert "tryon" not in upload(client, "box-3", box_glb()).json()["report"]["stats"]


def test_report_warns_about_models_that_cannot_be_worn(client: TestClient) -> None:
    wide = upload(client, "glasses-3", glasses_glb(2.0), placement="face").json()
    assert "TRYON_IMPLAUSIBLE_SIZE" in _codes(wide["report"])
    assert wide["tryon_url"]  # still stored and shown, true to size: the shop is warned
    flat = upload(client, "watch-3", watch_glb(opening="y"), placement="wrist").json()
    warnings = [w for w in flat["report"]["warnings"] if w["code"] == "TRYON_WRIST_AXIS"]
    assert warnings and "face y" in warnings[0]["message"]


def test_shoe_forward_is_read_from_the_geometry() -> None:
    import numpy as np

    # A shoe 28 cm long along x: the heel's collar (x < 0) stands taller than the toe box.
    pts = np.array([[-0.14, 0, 0], [-0.12, 0.12, 0], [0.0, 0.06, 0], [0.14, 0.0, 0.0]])
    pts = np.vstack([pts, [[0.13, 0.05, 0.0]]])
    fit = fit_for("foot", [-0.14, 0, -0.05], [0.14, 0.12, 0.05], pts)
    assert fit.forward_axis == "+x" and fit.point_m[1] == 0
    flipped = pts * np.array([-1, 1, 1])
    assert fit_for("foot", [-0.14, 0, -0.05], [0.14, 0.12, 0.05], flipped).forward_axis == "-x"
    along_z = fit_for("foot", [-0.05, 0, -0.14], [0.05, 0.12, 0.14], pts[:, [2, 1, 0]])
    assert along_z.forward_axis == "+z"


@pytest.mark.parametrize(
    ("placement", "lo", "hi", "kind", "point"),
    [
        # glasses: the front centre (max z) goes on the eyes
        ("face", [-0.07, -0.02, -0.15], [0.07, 0.03, 0.004], "glasses", [0.0, 0.005, 0.004]),
        # a 2 cm earring: its top (where the hook is) goes under the ear
        ("face", [-0.006, -0.02, -0.006], [0.006, 0.0, 0.006], "earrings", [0.0, 0.0, 0.0]),
        # a hat: the centre of its opening (min y) goes round the head
        ("head", [-0.12, 0.0, -0.12], [0.12, 0.12, 0.12], "hat", [0.0, 0.0, 0.0]),
        # a watch: its centre goes round the wrist
        ("wrist", [-0.02, -0.03, -0.03], [0.02, 0.03, 0.04], "watch", [0.0, 0.0, 0.005]),
    ],
)
def test_fit_kind_and_the_point_put_on_the_landmark(
    placement: str, lo: list[float], hi: list[float], kind: str, point: list[float]
) -> None:
    fit = fit_for(placement, lo, hi)
    assert fit.kind == kind
    assert fit.point_m == pytest.approx(point)
    assert fit.forward == [0.0, 0.0, 1.0] and fit.forward_axis == "+z"
