"""The demo page in a real headless Chromium against `shoplens demo` in a subprocess."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from shoplens import demo
from tests.ar_assets.models import variants_glb
from tests.service.demo_process import running_demo
from tests.support import headless_chromium

pytestmark = [pytest.mark.browser, pytest.mark.real_model]

TOKEN = "browser-test-token"


@pytest.fixture
def server(demo_data_dir: Path, tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "data"
    shutil.copytree(demo_data_dir, data)
    with running_demo(data, tmp_path / "server.log", "--admin-token", TOKEN) as url:
        yield url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    # A phone-sized viewport.
    with headless_chromium(
        tmp_path / "chrome-profile", window="412,915", flags=["--disable-gpu"]
    ) as driver:
        driver.set_page_load_timeout(60)
        yield driver


def _answered(driver: Any) -> int:
    return int(driver.execute_script("return document.body.dataset.answered || '0'"))


def _heading(driver: Any) -> str:
    text: str = driver.execute_script(
        "return document.getElementById('results-heading').textContent"
    )
    return text


def _requests(driver: Any, part: str) -> list[str]:
    """URLs of the requests the page made that contain ``part``, oldest first."""
    urls: list[str] = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    return [u for u in urls if part in u]


def _choose_file(driver: Any, path: Path) -> None:
    from selenium.webdriver.common.by import By

    file_input = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].hidden = false;", file_input)
    file_input.send_keys(str(path))


def _wait_results(driver: Any, after: int, timeout: float = 90) -> list[str]:
    """The product ids shown once the page has answered more than ``after`` requests."""
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d: Any) -> Any:
        # Read the grid in one script call: it is re-rendered under our feet.
        answered, ids, status, failed = d.execute_script(
            "const s = document.getElementById('status');"
            "return [Number(document.body.dataset.answered || 0),"
            " [...document.querySelectorAll('.result')].map(e => e.dataset.productId),"
            " s.textContent, s.classList.contains('error')]"
        )
        if answered <= after:
            return False
        assert not failed, status
        return list(ids)

    ids: list[str] = WebDriverWait(driver, timeout).until(ready)
    return ids


def test_upload_a_photo_and_see_the_product_first(
    server: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    driver.get(server + "/")
    sample = next(s for s in demo.samples() if s.product_id == "granny-smith-apple")
    _choose_file(driver, sample.path)
    ids = _wait_results(driver, after=0)
    assert ids[0] == sample.product_id
    assert len(ids) == 12
    assert _heading(driver) == "Matches for your photo"
    # A JPEG shows as it is: no conversion round trip.
    assert driver.execute_script("return document.getElementById('preview').dataset.source") == (
        "local"
    )
    assert not _requests(driver, "/v1/preview")
    # No demo product has a 3D model: no AR button may show.
    assert not driver.execute_script(
        "return [...document.querySelectorAll('.result .ar')].some(a => a.offsetParent !== null)"
    )

    # Thumbnails are served by /v1/images and load (those in view: they are lazy).
    driver.execute_script("document.querySelector('.result').scrollIntoView()")
    WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "const v = [...document.querySelectorAll('.result img')]"
            ".filter(i => i.getBoundingClientRect().top < innerHeight);"
            "return v.length > 0 && v.every(i => i.complete && i.naturalWidth > 0)"
        )
    )
    shot = tmp_path / "results.png"
    assert driver.save_screenshot(str(shot))
    image = Image.open(BytesIO(shot.read_bytes())).convert("RGB")
    assert image.width > 300 and image.height > 300
    stat = ImageStat.Stat(image)
    assert max(stat.stddev) > 20  # not a blank page
    assert len(image.getcolors(maxcolors=1 << 20) or []) > 500  # photos, not flat boxes

    # One-tap sample photo.
    n = _answered(driver)
    driver.find_element(By.CSS_SELECTOR, '[data-sample="banana.jpg"]').click()
    ids = _wait_results(driver, after=n)
    assert ids[0] == "banana"

    # "More like this" on the first result: the product itself is excluded, and the
    # heading says whose alternatives these are.
    n = _answered(driver)
    driver.find_element(By.CSS_SELECTOR, ".result .more").click()
    ids = _wait_results(driver, after=n)
    assert "banana" not in ids
    assert _heading(driver) == "More like Banana"

    # Draw a region on the preview: only the product inside it is searched for.
    both = Image.new("RGB", (396, 198), "white")
    both.paste(Image.open(demo.DEMO_DIR / "images" / "banana.jpg"), (0, 0))
    both.paste(Image.open(demo.DEMO_DIR / "images" / "oatly-oat-milk.jpg"), (198, 0))
    composite = tmp_path / "two-products.jpg"
    both.save(composite, quality=92)
    n = _answered(driver)
    _choose_file(driver, composite)
    _wait_results(driver, after=n)
    preview = driver.find_element(By.ID, "preview")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", preview)
    w, h = preview.size["width"], preview.size["height"]
    n = _answered(driver)
    (
        ActionChains(driver)
        .move_to_element_with_offset(preview, 2, -h // 2 + 2)  # top edge, just right of centre
        .click_and_hold()
        .move_by_offset(w // 2 - 6, h // 2)
        .move_by_offset(0, h // 2 - 6)
        .release()
        .perform()
    )
    region = driver.execute_script("return document.getElementById('box').hidden ? null : 'drawn'")
    assert region == "drawn"
    # Releasing the box searches at once: no press on Search.
    assert _wait_results(driver, after=n)[0] == "oatly-oat-milk"
    assert _heading(driver) == "Matches for the marked region"
    sent = _requests(driver, "/v1/search?")[-1]
    assert "crop=" in sent, sent
    x, y, w_, h_ = (float(v) for v in sent.split("crop=")[1].split("&")[0].split("%2C"))
    assert 0.45 < x < 0.55 and y < 0.05 and x + w_ > 0.95 and h_ > 0.9, sent

    # Filters: in stock only (the drawn region still applies).
    driver.find_element(By.CSS_SELECTOR, "details.filters summary").click()
    driver.find_element(By.ID, "in-stock").click()
    n = _answered(driver)
    driver.find_element(By.ID, "search").click()
    assert _wait_results(driver, after=n)
    stock = driver.execute_script(
        "return [...document.querySelectorAll('.result .stock')].map(e => e.textContent)"
    )
    assert stock and set(stock) == {"In stock"}


def test_a_heic_photo_shows_a_converted_preview(server: str, browser: Any, tmp_path: Path) -> None:
    """Chromium cannot decode HEIC: the page asks the server for a JPEG and shows that."""
    import pillow_heif
    from selenium.webdriver.support.ui import WebDriverWait

    sample = next(s for s in demo.samples() if s.product_id == "banana")
    photo = Image.open(sample.path).convert("RGB")
    heic = tmp_path / "IMG_0001.HEIC"
    pillow_heif.from_pillow(photo).save(heic, quality=90)
    assert heic.read_bytes()[4:12] == b"ftypheic"

    driver = browser
    driver.get(server + "/")
    _choose_file(driver, heic)
    assert _wait_results(driver, after=0)[0] == "banana"  # the search took the HEIC itself
    shown = WebDriverWait(driver, 30).until(
        lambda d: d.execute_script(
            "const p = document.getElementById('preview');"
            "return p.dataset.source === 'server' && p.complete && p.naturalWidth > 0"
            " ? [p.naturalWidth, p.naturalHeight] : null"
        )
    )
    assert shown == [photo.width, photo.height]
    assert len(_requests(driver, "/v1/preview")) == 1
    assert not driver.execute_script(
        "return document.getElementById('status').classList.contains('error')"
    )


WAIT_PICKER_JS = """
const done = arguments[arguments.length - 1];
const started = Date.now();
const picker = document.getElementById('variant-picker');
(function poll() {
  // The page marks the picker once it has handled model-viewer's load event.
  if (picker.dataset.variants === undefined) {
    if (Date.now() - started > 45000) { done('timeout'); return; }
    setTimeout(poll, 50);
    return;
  }
  const mv = document.getElementById('model');
  done({hidden: picker.hidden, available: mv.availableVariants,
        options: [...document.querySelectorAll('#variant option')].map(o => o.textContent),
        chosen: document.getElementById('variant').value, shown: mv.variantName});
})();
"""


def test_the_viewer_offers_the_models_material_variants(server: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    from tests.ar_assets.models import box_glb

    auth = {"Authorization": f"Bearer {TOKEN}"}
    put = httpx.put(
        f"{server}/v1/products/banana/ar",
        headers=auth,
        files={"file": ("banana.glb", variants_glb())},
        data={"placement": "table"},
        timeout=120,
    )
    assert put.status_code == 201, put.text
    assert [v["name"] for v in put.json()["variants"]] == ["Blue", "Red"]
    plain = httpx.put(  # a model without variants gets no picker
        f"{server}/v1/products/pineapple/ar",
        headers=auth,
        files={"file": ("plain.glb", box_glb())},
        timeout=120,
    )
    assert plain.status_code == 201, plain.text

    # WebGL in headless Chromium without a GPU: SwiftShader (without --use-angle=swiftshader,
    # which made quitting the browser take 5-20 s after a model-viewer page on this machine).
    flags = ["--enable-unsafe-swiftshader"]
    with headless_chromium(tmp_path / "viewer-profile", window="480,360", flags=flags) as d:
        d.set_script_timeout(60)
        # The link to one variant (as the AR block lists it) opens with that one chosen.
        blue = put.json()["variants"][0]
        assert blue["name"] == "Blue" and "material_variant=Blue" in blue["viewer_url"]
        d.get(blue["viewer_url"])
        seen = d.execute_async_script(WAIT_PICKER_JS)
        assert seen == {
            "hidden": False,
            "available": ["Blue", "Red"],
            "options": ["As modelled", "Blue", "Red"],
            "chosen": "Blue",
            "shown": "Blue",
        }, seen
        # Picking "Red" makes model-viewer apply it (its variant-applied event says so).
        d.execute_script(
            "const mv = document.getElementById('model');"
            "mv.addEventListener('variant-applied', () => { window.applied = mv.variantName; });"
        )
        Select(d.find_element(By.ID, "variant")).select_by_visible_text("Red")
        WebDriverWait(d, 30).until(lambda drv: drv.execute_script("return window.applied") == "Red")

        # The same page showing a model without variants hides the picker again.
        d.execute_script(
            "delete document.getElementById('variant-picker').dataset.variants;"
            "document.getElementById('model').src = arguments[0];",
            plain.json()["glb_mobile_url"],
        )
        seen = d.execute_async_script(WAIT_PICKER_JS)
        assert seen["hidden"] and seen["available"] == [], seen
