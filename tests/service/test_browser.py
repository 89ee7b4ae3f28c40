"""The demo page in a real headless Chromium against `shoplens demo` in a subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image, ImageStat

from shoplens import demo
from tests.support import free_port, headless_chromium

pytestmark = [pytest.mark.browser, pytest.mark.real_model]


@pytest.fixture
def server(demo_data_dir: Path, tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "data"
    shutil.copytree(demo_data_dir, data)
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    cmd = [sys.executable, "-c", "from shoplens.cli import main; main()", "demo"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail((tmp_path / "server.log").read_text(errors="replace")[-3000:])
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("shoplens demo did not become ready in 120 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


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
    file_input = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].hidden = false;", file_input)
    file_input.send_keys(str(sample.path))
    ids = _wait_results(driver, after=0)
    assert ids[0] == sample.product_id
    assert len(ids) == 12
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

    # "More like this" on the first result: the product itself is excluded.
    n = _answered(driver)
    driver.find_element(By.CSS_SELECTOR, ".result .more").click()
    ids = _wait_results(driver, after=n)
    assert "banana" not in ids

    # Draw a region on the preview: only the product inside it is searched for.
    both = Image.new("RGB", (396, 198), "white")
    both.paste(Image.open(demo.DEMO_DIR / "images" / "banana.jpg"), (0, 0))
    both.paste(Image.open(demo.DEMO_DIR / "images" / "oatly-oat-milk.jpg"), (198, 0))
    composite = tmp_path / "two-products.jpg"
    both.save(composite, quality=92)
    file_input = driver.find_element(By.ID, "file")
    driver.execute_script("arguments[0].hidden = false;", file_input)
    n = _answered(driver)
    file_input.send_keys(str(composite))
    _wait_results(driver, after=n)
    preview = driver.find_element(By.ID, "preview")
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", preview)
    w, h = preview.size["width"], preview.size["height"]
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
    n = _answered(driver)
    driver.find_element(By.ID, "search").click()
    assert _wait_results(driver, after=n)[0] == "oatly-oat-milk"
    sent = driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
        ".filter(u => u.includes('/v1/search?')).pop()"
    )
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
