"""The bundled demo catalog, `shoplens demo`'s indexing step, and the demo page."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shoplens import demo
from shoplens.config import Settings
from shoplens.indexer.sources.manifest import read_manifest
from shoplens.service.commands import DEMO_MARKER, ensure_demo_index
from tests.service.conftest import AppFactory
from tests.service.helpers import search


@pytest.fixture
def demo_client(
    make_client: AppFactory, demo_data_dir: Path, tmp_path: Path
) -> Iterator[TestClient]:
    copy = tmp_path / "demo"
    shutil.copytree(demo_data_dir, copy)
    with make_client(copy) as c:
        yield c


def test_demo_assets() -> None:
    manifest = read_manifest(demo.manifest_path())
    assert not manifest.rejects
    images = sorted((demo.DEMO_DIR / "images").glob("*.jpg"))
    assert len(images) == 81
    catalog_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in images}
    samples = demo.samples()
    assert 6 <= len(samples) <= 10
    for s in samples:
        assert s.path.is_file()
        assert hashlib.sha256(s.path.read_bytes()).hexdigest() not in catalog_hashes
        assert (demo.DEMO_DIR / "images" / f"{s.product_id}.jpg").is_file()
    total = sum(p.stat().st_size for p in demo.DEMO_DIR.rglob("*") if p.is_file())
    assert total < 3 * 1024 * 1024
    licence = (demo.DEMO_DIR / "LICENSE.md").read_text(encoding="utf-8")
    assert "MIT License" in licence and "Marcus Klasson" in licence
    assert "invented" in (demo.DEMO_DIR / "README.md").read_text(encoding="utf-8")


@pytest.mark.real_model
def test_demo_index_is_built_once(demo_data_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "again"
    shutil.copytree(demo_data_dir, copy)
    assert ensure_demo_index(Settings(data_dir=copy)) is False  # up to date: nothing to do
    (copy / DEMO_MARKER).write_text("stale\n", encoding="utf-8")  # the bundled catalog changed
    assert ensure_demo_index(Settings(data_dir=copy)) is True


def test_demo_never_touches_a_real_catalog(data_dir: Path) -> None:
    assert ensure_demo_index(Settings(data_dir=data_dir)) is False
    assert not (data_dir / DEMO_MARKER).exists()


@pytest.mark.real_model
def test_sample_photos_find_their_product(demo_client: TestClient) -> None:
    firsts = 0
    for s in demo.samples():
        results = search(demo_client, s.path.read_bytes(), k=5).json()["results"]
        ids = [r["product_id"] for r in results]
        assert s.product_id in ids, (s.product_id, ids)
        firsts += ids[0] == s.product_id
    assert firsts == len(demo.samples())


@pytest.mark.real_model
def test_home_page_and_assets(demo_client: TestClient) -> None:
    page = demo_client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert 'capture="environment"' in html and 'accept="image/*"' in html
    assert "http://" not in html.replace("http://www.w3.org", "")  # no external CDN
    for asset, kind in (("/static/app.js", "javascript"), ("/static/app.css", "text/css")):
        r = demo_client.get(asset)
        assert r.status_code == 200 and kind in r.headers["content-type"]
    listed = demo_client.get("/demo/samples").json()
    assert [s["name"] for s in listed] == [s.file for s in demo.samples()]
    photo = demo_client.get(listed[0]["url"])
    assert photo.status_code == 200 and photo.headers["content-type"] == "image/jpeg"
    assert demo_client.get("/demo/samples/../manifest.csv").status_code == 404
    assert demo_client.get("/demo/samples/nope.jpg").status_code == 404
