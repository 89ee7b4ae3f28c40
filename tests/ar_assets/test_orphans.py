"""No orphan AR assets: a 3D model attaches only to a product of the catalog, and goes
with it. Through the real app (lifespan, real catalog indexed by the real indexer,
real SQLite) and the real ``shoplens`` process."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from starlette.testclient import TestClient

from shoplens.ar_assets.service import ArService
from shoplens.config import Settings

# The service tests' real app over a real indexed catalog (300 products, "banana" among them).
from tests.service.conftest import (
    AppFactory,
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

from .models import box_glb

REPO = Path(__file__).resolve().parents[2]

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


def _stored(data_dir: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """Every file and directory under the AR store (tmp included), and every AR row."""
    settings = Settings(data_dir=data_dir)
    root = settings.assets_dir
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []
    db = sqlite3.connect(settings.db_path)
    try:
        known = db.execute("SELECT 1 FROM sqlite_master WHERE name = 'ar_assets'").fetchone()
        rows = db.execute("SELECT product_id, variant FROM ar_assets").fetchall() if known else []
    finally:
        db.close()
    return files, sorted(rows)


def _put(c: TestClient, pid: str, data: bytes, headers: dict[str, str]) -> httpx.Response:
    return c.put(
        f"/v1/products/{pid}/ar",
        files={"file": ("m.glb", data, "model/gltf-binary")},
        data={"placement": "table"},
        headers=headers,
    )


def test_an_unknown_product_gets_404_and_nothing_is_stored(
    client: TestClient, data_dir: Path, admin: dict[str, str]
) -> None:
    before = _stored(data_dir)
    r = _put(client, "bananna", box_glb(), admin)  # a typo of "banana"
    assert r.status_code == 404, r.text
    error = r.json()["error"]
    assert error["code"] == "not_found"
    assert "'bananna' does not exist" in error["message"]
    assert _stored(data_dir) == before
    assert client.get("/v1/products/bananna/ar").status_code == 404
    assert client.get("/ar/view/bananna").status_code == 404
    # A product of the catalog still gets its model.
    ok = _put(client, "banana", box_glb(), admin)
    assert ok.status_code == 201, ok.text
    assert _stored(data_dir)[1] == [("banana", "default")]


def test_a_product_made_by_the_api_takes_a_model(client: TestClient, admin: dict[str, str]) -> None:
    from tests.service.helpers import demo_photo

    r = client.put(
        "/v1/products/new-lamp",
        data={"meta": json.dumps({"title": "New lamp"})},
        files={"image": ("a.jpg", demo_photo("lemon"), "image/jpeg")},
        headers=admin,
    )
    assert r.status_code == 201, r.text
    assert _put(client, "new-lamp", box_glb(), admin).status_code == 201


def _names(block: dict[str, Any]) -> set[str]:
    return {block[k].rsplit("/", 1)[1] for k in ("glb_url", "glb_mobile_url", "usdz_url")}


def test_deleting_a_product_deletes_its_models(
    client: TestClient, data_dir: Path, admin: dict[str, str]
) -> None:
    assert _put(client, "banana", box_glb(), admin).status_code == 201
    kept = _put(client, "kiwi", box_glb(size=0.4), admin).json()
    gone = client.get("/v1/products/banana/ar").json()
    assert client.delete("/v1/products/banana", headers=admin).status_code == 204
    assert client.get("/v1/products/banana/ar").status_code == 404
    files, rows = _stored(data_dir)
    assert rows == [("kiwi", "default")]
    assert not _names(gone) & set(files)  # its files were collected with its rows
    assert _names(kept) <= set(files)
    assert client.get(kept["glb_url"]).status_code == 200


def test_without_a_loaded_catalog_uploads_wait(
    make_client: AppFactory, tmp_path: Path, admin: dict[str, str]
) -> None:
    # No index yet: whether the product exists cannot be told, so nothing is stored.
    empty = tmp_path / "empty"
    with make_client(empty) as c:
        before = _stored(empty)
        r = _put(c, "banana", box_glb(), admin)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "not_ready"
        assert _stored(empty) == before


def _shoplens(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoplens.cli", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_cli_refuses_an_unknown_product(data_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.glb"
    model.write_bytes(box_glb())
    before = _stored(data_dir)
    p = _shoplens("ar", "add", "bananna", str(model), "--json", "--data-dir", str(data_dir))
    assert p.returncode != 0
    assert p.stdout == ""
    assert p.stderr.strip().splitlines() == [
        "shoplens: error: product 'bananna' does not exist; nothing was stored: add the "
        "product to the catalog first (shoplens index, or PUT /v1/products/bananna)"
    ]
    assert _stored(data_dir) == before


def test_cli_json_is_only_json(data_dir: Path, tmp_path: Path) -> None:
    model = tmp_path / "m.glb"
    model.write_bytes(box_glb())
    p = _shoplens("ar", "add", "banana", str(model), "--json", "--data-dir", str(data_dir))
    assert p.returncode == 0, p.stderr
    body = json.loads(p.stdout)  # the whole of stdout, nothing before or after
    assert body["glb_url"].endswith(".glb") and body["report"]["ok"] is True
    assert _stored(data_dir)[1] == [("banana", "default")]


def test_cli_ar_add(data_dir: Path, tmp_path: Path) -> None:
    good = tmp_path / "box.glb"
    good.write_bytes(box_glb())
    add = ("ar", "add", "banana")
    r = _shoplens(*add, str(good), "--placement", "table", "--data-dir", str(data_dir))
    assert r.returncode == 0, r.stderr
    assert '"placement": "table"' in r.stdout
    assert "report: 0 errors" in r.stdout
    bad = tmp_path / "bad.glb"
    bad.write_bytes(good.read_bytes()[:100])
    r = _shoplens(*add, str(bad), "--data-dir", str(data_dir))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.strip().splitlines() if " INFO " not in ln]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("shoplens: error: the 3D model is invalid: GLB_")
    assert "Traceback" not in r.stderr
    # The first model is still attached.
    ar = ArService.open(Settings(data_dir=data_dir))
    assert ar.block("banana", "http://x")["placement"] == "table"
    r = _shoplens(*add, str(tmp_path / "missing.glb"), "--data-dir", str(data_dir))
    assert r.returncode != 0 and "no such file" in r.stderr
