"""Zipped glTF uploads: safe unpacking, URI rules, packing into one GLB."""

from __future__ import annotations

import io
import json
import stat
import zipfile
from pathlib import Path
from typing import Any

import pytest

from shoplens.ar_assets.pipeline import process
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.zipin import unpack
from shoplens.errors import InvalidAsset, UnsupportedMedia

from .models import gltf_zip


def _zip(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _unpack(tmp_path: Path, data: bytes, max_total: int = 1 << 26) -> Report:
    src = tmp_path / "in.zip"
    src.write_bytes(data)
    report = Report()
    unpack(src, tmp_path / "out", max_total, report)
    return report


def _codes(r: Report) -> set[str]:
    return {e.code for e in r.errors}


def test_good_zip_unpacks(tmp_path: Path) -> None:
    r = _unpack(tmp_path, gltf_zip())
    assert r.ok
    assert (tmp_path / "out" / "model" / "model.gltf").is_file()


@pytest.mark.parametrize("name", ["../evil.txt", "model/../../evil.txt", "/etc/evil", "C:/evil"])
def test_traversal_and_absolute_entries_are_refused(tmp_path: Path, name: str) -> None:
    r = _unpack(tmp_path, gltf_zip(extra={name: b"x"}))
    assert "ZIP_UNSAFE_ENTRY" in _codes(r)
    assert not (tmp_path / "evil.txt").exists()
    assert not (tmp_path / "out").exists()  # nothing written at all


def test_symlink_entry_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("model/texture.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    r = _unpack(tmp_path, _zip([("model/model.gltf", b"{}"), (link, b"/etc/passwd")]))
    assert "ZIP_UNSAFE_ENTRY" in _codes(r)
    assert "symbolic link" in r.first_error()


def test_zip_bomb_is_refused(tmp_path: Path) -> None:
    bomb = _zip([("model/model.gltf", b"{}"), ("model/zeros.bin", b"\x00" * (20 << 20))])
    assert len(bomb) < 200_000
    r = _unpack(tmp_path, bomb)
    assert "ZIP_UNSAFE_ENTRY" in _codes(r)
    assert "compression ratio" in r.first_error()
    (tmp_path / "b").mkdir()
    r2 = _unpack(tmp_path / "b", bomb, max_total=10 << 20)
    assert "ZIP_TOO_LARGE_UNCOMPRESSED" in _codes(r2)


def _with_uri(uri: str) -> Any:
    def fn(doc: dict[str, Any]) -> dict[str, Any]:
        doc["images"][0]["uri"] = uri
        return doc

    return fn


@pytest.mark.parametrize(
    ("uri", "code"),
    [
        ("http://example.com/t.png", "URI_NOT_RELATIVE"),
        ("https://example.com/t.png", "URI_NOT_RELATIVE"),
        ("file:///etc/passwd", "URI_NOT_RELATIVE"),
        ("/etc/passwd", "URI_OUTSIDE_UPLOAD"),
        ("../texture.png", "URI_OUTSIDE_UPLOAD"),
        ("%2e%2e/texture.png", "URI_OUTSIDE_UPLOAD"),
        ("missing.png", "URI_MISSING"),
    ],
)
def test_uris_must_stay_inside_the_zip(tmp_path: Path, uri: str, code: str) -> None:
    up = tmp_path / "up.zip"
    up.write_bytes(gltf_zip(_with_uri(uri)))
    (tmp_path / "w").mkdir()
    with pytest.raises(InvalidAsset) as err:
        process(up, "floor", 10 << 20, tmp_path / "w")
    report = err.value.details["report"]
    assert code in {e["code"] for e in report["errors"]}


def test_zip_without_gltf_and_usdz(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    up = tmp_path / "up.zip"
    up.write_bytes(_zip([("readme.txt", b"hi")]))
    with pytest.raises(InvalidAsset, match=r"no \.gltf"):
        process(up, "floor", 10 << 20, tmp_path / "w")
    up.write_bytes(_zip([("model.usdc", b"PXR-USDC")]))
    with pytest.raises(UnsupportedMedia, match="USD"):
        process(up, "floor", 10 << 20, tmp_path / "w")


def test_two_gltfs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "w").mkdir()
    up = tmp_path / "up.zip"
    up.write_bytes(
        gltf_zip(extra={"other.gltf": json.dumps({"asset": {"version": "2.0"}}).encode()})
    )
    with pytest.raises(InvalidAsset, match="ZIP_MANY_GLTF"):
        process(up, "floor", 10 << 20, tmp_path / "w")
