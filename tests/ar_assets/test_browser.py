"""The viewer page in headless Chromium against a real uvicorn server: model-viewer loads
the model (its ``load`` event fires) and a screenshot shows it."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shoplens.ar_assets import tools
from shoplens.config import Settings
from tests.support import headless_chromium, serve_app

from .conftest import make_app
from .models import box_glb, checker_png

# slow: a software-rendered screenshot alone takes 5-15 s on a shared 2-core machine.
pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("node_tools")]

SHARED_AR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar"

WAIT_LOAD_JS = """
const done = arguments[arguments.length - 1];
const timer = setTimeout(() => done('timeout'), 25000);
customElements.whenDefined('model-viewer').then(() => {
  const mv = document.querySelector('model-viewer');
  const finish = (v) => { clearTimeout(timer); done(v); };
  if (mv.loaded) { finish('load'); return; }
  mv.addEventListener('load', () => finish('load'));
  mv.addEventListener('error', (e) => finish('error: ' + JSON.stringify(e.detail)));
});
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    settings = Settings(data_dir=tmp_path / "data")
    app = make_app(settings)
    model = tmp_path / "box.glb"
    model.write_bytes(box_glb(texture=checker_png(256)))
    app.state.ar.ingest("box-1", model, placement="floor")
    plain = tmp_path / "plain.glb"
    plain.write_bytes(box_glb(texture=checker_png(256), size=0.4))
    draco = tmp_path / "draco.glb"
    tools.gltf_transform(["draco", str(plain), str(draco)])
    app.state.ar.ingest("draco-box", draco, placement="floor")
    if (SHARED_AR / "WaterBottle.glb").is_file():
        # Its mobile variant is meshopt + WebP: the decoder must come from the bundle.
        app.state.ar.ingest("bottle", SHARED_AR / "WaterBottle.glb", placement="table")
    with serve_app(app) as base:
        yield base


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    # WebGL in headless Chromium without a GPU: SwiftShader.
    flags = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
    with headless_chromium(tmp_path / "chrome-profile", window="800,700", flags=flags) as d:
        d.set_script_timeout(30)
        yield d


def _centre_std(png: bytes) -> float:
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.float32)
    h, w, _ = img.shape
    centre = img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3]
    return float(centre.std())


@pytest.mark.parametrize("product", ["box-1", "bottle"])
def test_viewer_loads_and_shows_the_model(server: str, driver: Any, product: str) -> None:
    from selenium.webdriver.common.by import By

    d = driver
    if product == "bottle" and not (SHARED_AR / "WaterBottle.glb").is_file():
        pytest.skip("../shared/data/ar is not available")
    d.get(f"{server}/ar/view/{product}")
    assert d.title == f"{product} in 3D"
    button = d.find_element(By.CSS_SELECTOR, 'model-viewer [slot="ar-button"]')
    # Hidden on a desktop without AR, but present for phones.
    assert button.get_attribute("textContent").strip() == "View in your space"
    result = d.execute_async_script(WAIT_LOAD_JS)
    assert result == "load", result
    std = 0.0
    deadline = time.monotonic() + 60  # one SwiftShader screenshot can take 15 s on a busy box
    while time.monotonic() < deadline:
        std = _centre_std(d.get_screenshot_as_png())
        if std > 10:
            break
        time.sleep(0.5)
    assert std > 10, f"the centre of the page looks blank (pixel std {std:.1f})"
    # Every script and model came from our own origin.
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert urls and all(u.startswith(server) for u in urls), urls


SWAP_SRC_JS = """
const [url, done] = [arguments[0], arguments[arguments.length - 1]];
const mv = document.querySelector('model-viewer');
const timer = setTimeout(() => done('timeout'), 25000);
mv.addEventListener('load', () => { clearTimeout(timer); done('load'); }, {once: true});
mv.addEventListener('error', (e) => { clearTimeout(timer); done('error: ' + e.detail.type); });
mv.src = url;
"""


def test_draco_original_loads_with_our_decoder(server: str, driver: Any) -> None:
    """An original that is Draco-compressed decodes with the decoder we serve, not gstatic's."""
    import json
    import urllib.request

    with urllib.request.urlopen(f"{server}/v1/products/draco-box/ar") as resp:
        block = json.load(resp)
    d = driver
    d.get(f"{server}/ar/view/draco-box")
    assert d.execute_async_script(WAIT_LOAD_JS) == "load"
    if block["glb_mobile_url"] != block["glb_url"]:  # the page showed the meshopt variant
        assert d.execute_async_script(SWAP_SRC_JS, block["glb_url"]) == "load"
    urls = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{server}/ar/static/draco/draco_decoder.wasm" in urls, urls
    assert all(u.startswith(server) for u in urls), urls
