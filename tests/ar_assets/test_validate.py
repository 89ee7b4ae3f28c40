"""Shoplens' own glTF checks and the Khronos validator on generated models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shoplens.ar_assets import tools
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.validation.checks import validate

from .models import box, box_glb, glb, mutate


def check(tmp_path: Path, data: bytes, placement: str = "floor", khronos: bool = True) -> Report:
    p = tmp_path / "m.glb"
    p.write_bytes(data)
    return validate(p, placement, len(data), khronos=khronos).report


def codes(r: Report) -> set[str]:
    return {i.code for i in r.errors}


def test_box_is_valid_with_metres_and_triangles(tmp_path: Path) -> None:
    r = check(tmp_path, box_glb())
    assert r.ok, r.errors
    assert r.stats["triangles"] == 12
    assert r.stats["dimensions_m"] == {"x": 0.3, "y": 0.3, "z": 0.3}
    # On the floor, bottom centre, power-of-two texture: nothing to warn about but a
    # missing validator, where the Node tools are not installed.
    assert {w.code for w in r.warnings} <= {"KHRONOS_VALIDATOR_UNAVAILABLE"}


def test_dimensions_follow_the_node_hierarchy(tmp_path: Path) -> None:
    def scaled(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["nodes"] = [
            {"children": [1], "scale": [2, 1, 1]},
            {"mesh": 0, "rotation": [0, 0, 0.7071068, 0.7071068]},  # 90 deg about Z
        ]
        return doc, blob

    r = check(tmp_path, mutate(scaled), khronos=False)
    dims = r.stats["dimensions_m"]
    assert dims["x"] == pytest.approx(0.6, abs=1e-3)
    assert dims["y"] == pytest.approx(0.3, abs=1e-3)


def test_bad_accessor_is_an_error(tmp_path: Path) -> None:
    def long(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["accessors"][1]["count"] = 10_000
        return doc, blob

    r = check(tmp_path, mutate(long), khronos=False)
    assert "ACCESSOR_TOO_LONG" in codes(r)
    assert any(e.pointer == "/accessors/1" for e in r.errors)


@pytest.mark.parametrize(
    ("damage", "code"),
    [
        (lambda b: b[: len(b) // 2], "GLB_LENGTH_MISMATCH"),
        (lambda b: b[:8], "GLB_UNEXPECTED_END_OF_HEADER"),
        (lambda b: b[:20] + b"}{]:,!" + b[26:], "INVALID_JSON"),
        (lambda b: b[:16] + b"XXXX" + b[20:], "GLB_UNEXPECTED_FIRST_CHUNK"),
        (lambda b: b[:4] + b"\x01\x00\x00\x00" + b[8:], "GLB_INVALID_VERSION"),
    ],
)
def test_malformed_glb(tmp_path: Path, damage: Any, code: str) -> None:
    r = check(tmp_path, damage(box_glb()), khronos=False)
    assert code in codes(r)


def test_buffer_and_view_ranges(tmp_path: Path) -> None:
    def bad_view(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["bufferViews"][1]["byteOffset"] = 10**6
        doc["bufferViews"][2]["buffer"] = 7
        doc["buffers"][0]["byteLength"] = len(blob) + 4096
        return doc, blob

    assert {"BUFFER_VIEW_TOO_LONG", "BUFFER_VIEW_BUFFER_INVALID", "BUFFER_BYTELENGTH_MISMATCH"} <= (
        codes(check(tmp_path, mutate(bad_view), khronos=False))
    )


def test_undecodable_texture(tmp_path: Path) -> None:
    r = check(tmp_path, box_glb(texture=b"\x89PNG\r\n\x1a\n" + b"\x00" * 60), khronos=False)
    assert "IMAGE_UNDECODABLE" in codes(r)


def test_webp_and_ktx2_textures(tmp_path: Path) -> None:
    from .models import checker_png

    webp = checker_png(32, "WEBP")
    ok = check(tmp_path, box_glb(texture=webp, tex_mime="image/webp"), khronos=False)
    assert ok.ok and ok.stats["max_texture_px"] == 32
    bad_ktx = b"\xabKTX 20\xbb\r\n\x1a\n" + b"\x00" * 10
    r = check(tmp_path, box_glb(texture=bad_ktx, tex_mime="image/ktx2"), khronos=False)
    assert "IMAGE_KTX2_TRUNCATED" in codes(r)


def test_unsupported_required_extension_is_named(tmp_path: Path) -> None:
    def req(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["extensionsUsed"] = ["ACME_teleport"]
        doc["extensionsRequired"] = ["ACME_teleport"]
        return doc, blob

    r = check(tmp_path, mutate(req), khronos=False)
    assert "UNSUPPORTED_REQUIRED_EXTENSION" in codes(r)
    assert "ACME_teleport" in r.first_error()


def test_supported_required_extension_passes_own_checks(tmp_path: Path) -> None:
    def req(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["extensionsUsed"] = ["KHR_materials_unlit"]
        doc["extensionsRequired"] = ["KHR_materials_unlit"]
        doc["materials"][0]["extensions"] = {"KHR_materials_unlit": {}}
        return doc, blob

    assert check(tmp_path, mutate(req), khronos=False).ok


@pytest.mark.parametrize(
    "uri",
    [
        "http://example.com/x.bin",
        "https://example.com/x.bin",
        "file:///etc/passwd",
        "/etc/passwd",
        "../x.bin",
        "x.bin",
    ],
)
def test_glb_must_be_self_contained(tmp_path: Path, uri: str) -> None:
    def ext(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["buffers"].append({"byteLength": 4, "uri": uri})
        return doc, blob

    r = check(tmp_path, mutate(ext))
    assert codes(r) & {"URI_NOT_RELATIVE", "URI_OUTSIDE_UPLOAD", "URI_EXTERNAL_IN_GLB"}
    assert r.khronos_validator.startswith("not run")  # never handed to a resolver


def test_data_uri_buffer_is_allowed(tmp_path: Path) -> None:
    import base64

    def data_uri(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["buffers"][0]["uri"] = (
            "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
        )
        return doc, blob

    doc, blob = box()
    doc, _ = data_uri(doc, blob)
    r = check(tmp_path, glb(doc, None), khronos=False)
    assert r.ok, r.errors


@pytest.mark.parametrize(
    ("size", "placement", "flagged"),
    [
        (0.3, "foot", False),
        (1.5, "foot", True),
        (12.0, "floor", True),
        (0.005, "table", True),
        (2.0, "floor", False),
    ],
)
def test_implausible_size_warnings(
    tmp_path: Path, size: float, placement: str, flagged: bool
) -> None:
    r = check(tmp_path, box_glb(size=size), placement, khronos=False)
    assert r.ok
    assert ("COMMERCE_IMPLAUSIBLE_SIZE" in {w.code for w in r.warnings}) is flagged


def test_commerce_texture_and_origin_warnings(tmp_path: Path) -> None:
    from .models import checker_png

    def lifted(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["nodes"][0]["translation"] = [0.5, 0.2, 0]
        return doc, blob

    r = check(tmp_path, mutate(lifted, texture=checker_png(100)), khronos=False)
    warned = {w.code for w in r.warnings}
    assert {"COMMERCE_ORIGIN", "COMMERCE_TEXTURE_NOT_POT"} <= warned


def test_khronos_errors_are_merged(tmp_path: Path, node_tools: tools.NodeTools) -> None:
    def bad_min(doc: dict[str, Any], blob: bytes) -> tuple[dict[str, Any], bytes]:
        doc["accessors"][1]["min"] = [5, 5, 5]  # structurally fine, semantically wrong
        return doc, blob

    r = check(tmp_path, mutate(bad_min))
    assert not r.ok
    assert any(e.source == "khronos" and e.code.startswith("ACCESSOR_") for e in r.errors)


def test_without_node_the_report_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Node hidden from this process as an operator's PATH would: the tools are looked up again.
    empty = tmp_path / "no-node"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert tools.find_tools().validator is None
    r = check(tmp_path, box_glb())
    assert r.ok
    assert r.khronos_validator.startswith("unavailable")
    # A warning, not an info: the upload was checked less than it would be with Node.
    warned = {w.code: w.message for w in r.warnings}
    assert "shoplens doctor" in warned["KHRONOS_VALIDATOR_UNAVAILABLE"]
