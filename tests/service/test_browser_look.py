"""The demo page's shop-the-look overlay in a real headless Chromium against
`shoplens demo`: boxes over the photo where the products are, a tap shows a region's
results, a second tap the whole photo's again."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.service.demo_process import running_demo
from tests.service.look_scenes import jpeg, on_product, scene
from tests.service.test_browser import _choose_file, _heading, _requests, _wait_results
from tests.support import headless_chromium

pytestmark = [pytest.mark.browser, pytest.mark.real_model]


@pytest.fixture
def server(demo_data_dir: Path, tmp_path: Path) -> Iterator[str]:
    data = tmp_path / "data"
    shutil.copytree(demo_data_dir, data)
    with running_demo(data, tmp_path / "server.log") as url:
        yield url


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    with headless_chromium(
        tmp_path / "chrome-profile", window="412,915", flags=["--disable-gpu"]
    ) as driver:
        driver.set_page_load_timeout(60)
        yield driver


def _shown_results(driver: Any) -> list[str]:
    ids: list[str] = driver.execute_script(
        "return [...document.querySelectorAll('.result')].map(e => e.dataset.productId)"
    )
    return ids


def test_found_regions_are_tappable_boxes_over_the_photo(
    server: str, browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server + "/")
    driver.find_element(By.ID, "look").click()
    shown = scene()
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(jpeg(shown.image, orientation=6))  # the page shows it upright
    _choose_file(driver, photo)
    whole = _wait_results(driver, after=0)
    assert "regions=auto" in _requests(driver, "/v1/search?")[-1]

    # Each box, measured on the page against the shown photo, is on its product.
    boxes: dict[str, dict[str, float]] = driver.execute_script(
        "const p = document.getElementById('preview').getBoundingClientRect();"
        "const out = {};"
        "for (const b of document.querySelectorAll('#regions .region')) {"
        "  const r = b.getBoundingClientRect();"
        "  if (!(b.dataset.productId in out)) out[b.dataset.productId] = {x: (r.left - p.left)"
        "    / p.width, y: (r.top - p.top) / p.height, w: r.width / p.width,"
        "    h: r.height / p.height};"
        "}"
        "return out;"
    )
    for product_id, box in shown.boxes.items():
        assert product_id in boxes, boxes
        assert on_product(box, boxes[product_id]), (product_id, box, boxes[product_id])

    milk = driver.find_element(
        By.CSS_SELECTOR, '#regions .region[data-product-id="oatly-oat-milk"]'
    )
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", milk)
    milk.click()
    assert _shown_results(driver)[0] == "oatly-oat-milk"
    assert _heading(driver).startswith("Region ") and _heading(driver).endswith(": Oat Milk")
    assert "active" in (milk.get_attribute("class") or "")
    milk.click()  # again: back to the whole photo
    assert _shown_results(driver) == whole
    assert _heading(driver) == "Matches for your photo"
