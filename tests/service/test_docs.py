"""``/docs`` works offline: Swagger UI's files are served by Shoplens itself.

The page may reference nothing but its own origin; each asset is served with
caching headers; a real headless Chromium renders the operations list while no
request leaves the origin.
"""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.service.docs import SWAGGER_DIR, swagger_version
from tests.support import headless_chromium, serve_app

if TYPE_CHECKING:
    from shoplens.models.base import ImageEmbedder


class _Links(HTMLParser):
    """Every URL the page loads or links to (src and href attributes)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href") and v]


def _page_urls(html: str) -> list[str]:
    parser = _Links()
    parser.feed(html)
    return parser.urls


def test_docs_page_loads_only_its_own_assets(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    urls = _page_urls(r.text)
    assert len(urls) == 3, urls  # stylesheet, favicon, script
    assert "url: '/openapi.json'" in r.text
    version = swagger_version()
    for url in urls:
        # Same origin: a path, never a scheme or a protocol-relative //host.
        assert url.startswith("/") and not url.startswith("//"), url
        assert url.endswith(f"?v={version}"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        name = url.split("?")[0].rsplit("/", 1)[1]
        assert asset.content == (SWAGGER_DIR / name).read_bytes()
        assert asset.headers["cache-control"] == "public, max-age=86400"
        assert client.get(url, headers={"If-None-Match": asset.headers["etag"]}).status_code == 304
    types = {u.split("?")[0].rsplit(".", 1)[1]: client.get(u).headers["content-type"] for u in urls}
    assert types["js"].startswith("text/javascript")
    assert types["css"].startswith("text/css")
    assert types["png"] == "image/png"
    # The licence ships beside the files (Apache-2.0).
    assert "Apache License" in (SWAGGER_DIR / "LICENSE").read_text(encoding="utf-8")


def test_docs_links_keep_the_proxy_prefix(client: TestClient) -> None:
    page = TestClient(client.app, root_path="/shop").get("/docs").text
    assert "url: '/shop/openapi.json'" in page
    assert all(u.startswith("/shop/static/swagger/") for u in _page_urls(page))


def test_redoc_is_off(client: TestClient) -> None:
    """ReDoc would load its bundle and fonts from CDNs: /docs is the one docs page."""
    r = client.get("/redoc")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"


@pytest.fixture
def live_url(data_dir: Path, embedder: ImageEmbedder) -> Iterator[str]:
    """The real app under uvicorn on a loopback port, for a real browser."""

    from shoplens.service.app import create_app

    app = create_app(Settings(data_dir=data_dir, reload_interval_s=0.2), embedder=embedder)
    with serve_app(app) as base:
        yield base


@pytest.mark.browser
def test_docs_render_offline_in_a_browser(live_url: str, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    with headless_chromium(tmp_path / "chrome-profile", window="1280,1000") as driver:
        driver.set_page_load_timeout(60)
        driver.get(live_url + "/docs")
        # One block per operation once Swagger UI has fetched and rendered the description.
        operations = WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.querySelectorAll('.opblock').length")
        )
        spec = httpx.get(live_url + "/openapi.json", timeout=10).json()
        assert operations == sum(len(item) for item in spec["paths"].values())
        resources: list[str] = driver.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        names = [r.split("?")[0].rsplit("/", 1)[-1] for r in resources]
        assert {"swagger-ui-bundle.js", "swagger-ui.css", "openapi.json"} <= set(names), resources
        outside = [r for r in resources if not r.startswith(live_url + "/")]
        assert outside == [], outside
        # The stylesheet applied: Swagger UI's own rule for the operations' border radius.
        radius = driver.execute_script(
            "return getComputedStyle(document.querySelector('.opblock')).borderTopLeftRadius"
        )
        assert radius == "4px"
