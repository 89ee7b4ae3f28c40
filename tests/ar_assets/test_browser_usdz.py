"""The viewer page and the USDZ (issue #15) in headless Chromium against a real server:
picking a material variant hands Quick Look that variant's own USDZ (``ios-src``),
and a degraded USDZ is said on the page."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shoplens.config import Settings
from tests.support import headless_chromium, serve_app

from . import fidelity_models as fm
from .conftest import make_app
from .models import variants_glb
from .test_browser import WAIT_LOAD_JS

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.usefixtures("node_tools")]

PICK_JS = """
const [name, done] = [arguments[0], arguments[arguments.length - 1]];
const select = document.getElementById('variant');
const timer = setTimeout(() => done('timeout'), 25000);
const pick = () => {
  select.value = name;
  select.dispatchEvent(new Event('change'));
  clearTimeout(timer);
  done(document.getElementById('model').getAttribute('ios-src'));
};
const wait = () => (document.getElementById('variant-picker').dataset.variants ? pick()
  : setTimeout(wait, 100));
wait();
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    app = make_app(Settings(data_dir=tmp_path / "data"))
    model = tmp_path / "variants.glb"
    model.write_bytes(variants_glb())
    app.state.ar.ingest("shoe", model, placement="floor")
    image = bytearray(fm.ktx2_image(tmp_path))
    image[12:16] = (23).to_bytes(4, "little")  # a KTX2 the transcoder cannot read
    lost = tmp_path / "lost.glb"
    lost.write_bytes(fm.ktx2_glb(bytes(image)))
    app.state.ar.ingest("lamp", lost, placement="floor")
    with serve_app(app) as base:
        yield base


@pytest.fixture
def driver(tmp_path: Path) -> Iterator[Any]:
    flags = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
    with headless_chromium(tmp_path / "chrome-profile", window="800,700", flags=flags) as d:
        d.set_script_timeout(30)
        yield d


def _block(server: str, product: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server}/v1/products/{product}/ar") as resp:
        block: dict[str, Any] = json.load(resp)
    return block


def test_picking_a_variant_hands_quick_look_its_usdz(server: str, driver: Any) -> None:
    block = _block(server, "shoe")
    urls = {v["name"]: v["usdz_url"] for v in block["variants"]}
    d = driver
    d.get(f"{server}/ar/view/shoe")
    assert d.execute_async_script(WAIT_LOAD_JS) == "load"
    assert d.find_element("id", "model").get_attribute("ios-src") == block["usdz_url"]
    assert d.execute_async_script(PICK_JS, "Red") == urls["Red"]
    assert d.execute_async_script(PICK_JS, "") == block["usdz_url"]  # "As modelled"


def test_degraded_usdz_is_said_on_the_page(server: str, driver: Any) -> None:
    assert _block(server, "lamp")["usdz_degraded"] is True
    assert _block(server, "shoe")["usdz_degraded"] is False
    d = driver
    d.get(f"{server}/ar/view/lamp")
    note = d.find_element("id", "usdz-degraded")
    assert note.is_displayed() and "simplified" in note.text
    assert d.find_element("id", "model").get_attribute("data-usdz-degraded") == "true"
    d.get(f"{server}/ar/view/shoe")
    assert d.find_elements("id", "usdz-degraded") == []
