"""The bundled demo catalog, `shoplens demo`'s indexing step, and the demo page."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from shoplens import demo
from shoplens.config import Settings
from shoplens.indexer.sources.manifest import read_manifest
from shoplens.service.commands import DEMO_MARKER, demo_banner, demo_settings, ensure_demo_index
from tests.service.conftest import AppFactory
from tests.service.demo_process import running_demo
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


def _shoplens(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from shoplens.cli import main; main()", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)


@pytest.mark.parametrize("token", ["", "two words"])
def test_demo_refuses_an_unusable_admin_token(token: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SHOPLENS_ADMIN_TOKEN"}
    done = _shoplens("demo", "--data-dir", str(tmp_path / "d"), "--admin-token", token, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "shoplens: error: --admin-token must be a non-empty token without spaces"
    ]
    assert not (tmp_path / "d").exists()  # refused before indexing anything


def test_demo_settings_always_carry_an_admin_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHOPLENS_ADMIN_TOKEN", raising=False)
    given, source = demo_settings(None, None, None, "my-token")
    assert source == "--admin-token" and given.admin_token is not None
    assert given.admin_token.get_secret_value() == "my-token"
    assert "my-token" not in demo_banner(given, source)  # a chosen secret is not echoed

    monkeypatch.setenv("SHOPLENS_ADMIN_TOKEN", "from-env")
    env, source = demo_settings(None, None, None, None)
    assert source == "SHOPLENS_ADMIN_TOKEN" and env.admin_token is not None
    assert env.admin_token.get_secret_value() == "from-env"

    monkeypatch.setenv("SHOPLENS_ADMIN_TOKEN", "")  # set but empty: admin would be off
    made, source = demo_settings(None, None, None, None)
    again, _ = demo_settings(None, None, None, None)
    assert source == "generated" and made.admin_token is not None and again.admin_token
    token = made.admin_token.get_secret_value()
    assert len(token) >= 20 and token != again.admin_token.get_secret_value()
    assert token in demo_banner(made, source)


@pytest.mark.real_model
def test_demo_prints_a_working_admin_token(
    demo_data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --admin-token the banner shows a random token, and the admin routes take it."""
    monkeypatch.delenv("SHOPLENS_ADMIN_TOKEN", raising=False)
    copy = tmp_path / "data"
    shutil.copytree(demo_data_dir, copy)
    log = tmp_path / "server.log"
    with running_demo(copy, log) as url:
        banner = log.read_text(encoding="utf-8", errors="replace")
        found = re.search(r"admin token: (\S+)  \(random", banner)
        assert found, banner
        assert f"demo page {url}/" in banner
        jobs = f"{url}/v1/admin/jobs/no-such-job"
        auth = {"Authorization": f"Bearer {found.group(1)}"}
        assert httpx.get(jobs, headers=auth).status_code == 404  # past the admin check
        assert httpx.get(jobs).status_code == 401
        assert httpx.get(jobs, headers={"Authorization": "Bearer wrong"}).status_code == 401
