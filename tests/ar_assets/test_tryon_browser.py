"""The try-on page in headless Chromium (SwiftShader WebGL) against a real uvicorn server,
on the people photos of ../shared/data/people: in photo mode and with a fake camera made
from a photo. The page must reach ``tracking``, anchor the product where it belongs
(between the eyes, on the wrist, at an ankle: positions read off the photos by eye),
draw it there, answer ``searching`` on a photo without a person, and load nothing from
another origin."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from shoplens.ar_assets.tryon import libraries_installed
from shoplens.config import Settings
from tests.support import headless_chromium, network_requests, serve_app

from .conftest import make_app
from .wearables import hat_glb, people_photo, watch_glb, y4m

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("node_tools")]

SHARED_AR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar"
# Where the product belongs on each photo, as fractions of the photo (any of the points).
EYES = {
    "face_front_1.jpg": [(0.47, 0.37)],
    "face_front_2.jpg": [(0.49, 0.19)],
    "face_front_3.jpg": [(0.44, 0.17)],
    "face_turned_1.jpg": [(0.53, 0.28)],
}
WRISTS = {
    "hand_wrist_1.jpg": [(0.27, 0.70)],
    "hand_wrist_2.jpg": [(0.16, 0.95), (0.76, 0.05)],
    "hand_wrist_3.jpg": [(0.62, 0.72)],
}
ANKLES = {
    "body_1.jpg": [(0.45, 0.86)],
    "body_2.jpg": [(0.18, 0.80), (0.29, 0.80)],
    "body_3.jpg": [(0.14, 0.83), (0.78, 0.83)],
}
TOLERANCE = 0.07  # of the frame's width and height
SWIFTSHADER = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader"]


def _serve(app: Any) -> Iterator[str]:
    with serve_app(app) as base:
        yield base


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Any:
    if not all(libraries_installed(p) for p in ("face", "wrist", "foot")):
        pytest.skip("three.js and @mediapipe/* are not in node_modules")
    people_photo("no_person_1.jpg")
    if not (SHARED_AR / "SunglassesKhronos.glb").is_file():
        pytest.skip("../shared/data/ar is not available")
    return make_app(Settings(data_dir=tmp_path_factory.mktemp("tryon") / "data"))


@pytest.fixture(scope="module")
def server(app: Any) -> Iterator[str]:
    yield from _serve(app)


def _ingest(app: Any, tmp: Path, product: str) -> None:
    """Store one worn product on first use (each upload runs the whole AR pipeline)."""
    if app.state.ar.rows(product):
        return
    if product == "glasses":
        app.state.ar.ingest(product, SHARED_AR / "SunglassesKhronos.glb", placement="face")
        return
    if product == "shoe":
        import shutil

        archive = shutil.make_archive(str(tmp / "shoe"), "zip", SHARED_AR / "MaterialsVariantsShoe")
        app.state.ar.ingest(product, Path(archive), placement="foot")
        return
    data, placement = {"watch": (watch_glb(), "wrist"), "hat": (hat_glb(), "head")}[product]
    path = tmp / f"{product}.glb"
    path.write_bytes(data)
    app.state.ar.ingest(product, path, placement=placement)


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("chrome")
    with headless_chromium(
        tmp / "profile", window="900,900", flags=SWIFTSHADER, network_log=True
    ) as d:
        d.set_script_timeout(60)
        yield d


def _wait(d: Any, script: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = d.execute_script(script)
        if value:
            return value
        time.sleep(0.2)
    logs = [e["message"][:300] for e in d.get_log("browser")][-10:]
    raise AssertionError(f"timed out waiting for {script!r}: {value!r}; console: {logs}")


def _open(d: Any, server: str, product: str, query: str = "?mode=photo") -> None:
    network_requests(d)  # from here on: the browser's own start page is not ours to check
    d.get(f"{server}/ar/try/{product}{query}")
    _wait(
        d,
        "return window.shoplensTryOn && (shoplensTryOn.ready || shoplensTryOn.status === 'error')",
    )
    state = d.execute_script("return shoplensTryOn")
    assert state["status"] != "error", state["message"]


def _show(d: Any, photo: str) -> dict[str, Any]:
    """Pick ``photo`` in the page's file input; the page's state once the tracker answered."""
    from selenium.webdriver.common.by import By

    before = d.execute_script("return shoplensTryOn.frames")
    d.find_element(By.ID, "photo").send_keys(str(people_photo(photo)))
    _wait(d, f"return shoplensTryOn.frames > {before} && shoplensTryOn.status !== 'loading'")
    state: dict[str, Any] = d.execute_script(
        "const s = shoplensTryOn; return {status: s.status, anchor: s.anchor, "
        "placement: s.placement, fps: s.fps, message: s.message}"
    )
    return state


def _picture(d: Any, product: bool) -> np.ndarray:
    url = d.execute_script("return shoplensTryOn.capture({product: arguments[0]})", product)
    png = base64.b64decode(url.split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _near(anchor: dict[str, float], points: list[tuple[float, float]]) -> bool:
    return any(
        abs(anchor["x"] - x) <= TOLERANCE and abs(anchor["y"] - y) <= TOLERANCE for x, y in points
    )


def _drawn_near(d: Any, anchor: dict[str, float], radius: float) -> float:
    """Share of the pixels around ``anchor`` that the product changed in the picture."""
    with_it, without = _picture(d, True), _picture(d, False)
    assert with_it.shape == without.shape
    h, w, _ = with_it.shape
    changed = np.abs(with_it - without).max(axis=2) > 40
    x, y, r = int(anchor["x"] * w), int(anchor["y"] * h), int(radius * max(w, h))
    window = changed[max(y - r, 0) : y + r, max(x - r, 0) : x + r]
    return float(window.mean()) if window.size else 0.0


def _same_origin(d: Any, server: str) -> None:
    """Every request the page made (Chrome's network log: scripts, wasm, models, fetches
    from workers, failed ones too) went to our server; data: and blob: URLs stay inside."""
    # chrome:// is the browser's own new-tab page, loading beside ours: never the network.
    urls = [u for u in network_requests(d) if not u.startswith("chrome://")]
    foreign = [u for u in urls if not u.startswith((server + "/", "data:", "blob:"))]
    assert urls and not foreign, foreign
    assert any(u.startswith(server + "/ar/try/") for u in urls), urls


def test_glasses_on_a_face_photo_and_none_without_a_person(
    app: Any, server: str, driver: Any, tmp_path: Path
) -> None:
    """The one browser check of the default run: glasses in photo mode."""
    _ingest(app, tmp_path, "glasses")
    _open(driver, server, "glasses")
    state = _show(driver, "face_front_1.jpg")
    assert state["status"] == "tracking" and state["placement"] == "face", state
    assert _near(state["anchor"], EYES["face_front_1.jpg"]), state["anchor"]
    assert _drawn_near(driver, state["anchor"], 0.08) > 0.2
    state = _show(driver, "no_person_1.jpg")
    assert state["status"] == "searching" and state["anchor"] is None, state
    assert "camera" in state["message"]
    assert _drawn_near(driver, {"x": 0.5, "y": 0.5}, 0.5) == 0.0  # nothing drawn
    _same_origin(driver, server)


CASES = [
    ("glasses", EYES, 0.08),
    ("watch", WRISTS, 0.08),
    ("shoe", ANKLES, 0.12),  # the anchor is the ankle; the shoe is around and below it
]


@pytest.mark.slow
@pytest.mark.parametrize(("product", "truth", "radius"), CASES, ids=[c[0] for c in CASES])
def test_product_lands_on_the_body_part_of_each_photo(
    app: Any,
    server: str,
    driver: Any,
    tmp_path: Path,
    product: str,
    truth: dict[str, list[tuple[float, float]]],
    radius: float,
) -> None:
    _ingest(app, tmp_path, product)
    _open(driver, server, product)
    for photo, points in truth.items():
        state = _show(driver, photo)
        assert state["status"] == "tracking", (photo, state)
        assert _near(state["anchor"], points), (photo, state["anchor"], points)
        assert _drawn_near(driver, state["anchor"], radius) > 0.1, photo
    assert _show(driver, "no_person_1.jpg")["status"] == "searching"
    _same_origin(driver, server)


@pytest.mark.slow
def test_hat_is_drawn_above_the_eyes(app: Any, server: str, driver: Any, tmp_path: Path) -> None:
    _ingest(app, tmp_path, "hat")
    _open(driver, server, "hat")
    state = _show(driver, "face_front_2.jpg")
    assert state["status"] == "tracking" and state["placement"] == "head"
    (ex, ey) = EYES["face_front_2.jpg"][0]
    assert abs(state["anchor"]["x"] - ex) < TOLERANCE and state["anchor"]["y"] < ey
    assert _drawn_near(driver, state["anchor"], 0.06) > 0.2


@pytest.mark.slow
def test_live_camera_tracks_and_measures_fps(app: Any, tmp_path: Path) -> None:
    """A fake camera playing a face photo: the page opens the camera, tracks, counts fps."""
    _ingest(app, tmp_path, "glasses")
    video = y4m(people_photo("face_front_1.jpg"), tmp_path / "face.y4m")
    flags = [
        *SWIFTSHADER,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={video}",
    ]
    with headless_chromium(
        tmp_path / "profile", window="900,900", flags=flags, network_log=True
    ) as d:
        for base in _serve(app):
            network_requests(d)
            d.get(f"{base}/ar/try/glasses")
            _wait(d, "return window.shoplensTryOn && shoplensTryOn.status === 'tracking'")
            _wait(d, "return shoplensTryOn.frames >= 20", timeout=120)
            state = d.execute_script("return shoplensTryOn")
            assert state["mode"] == "camera" and state["fps"] > 0, state
            assert _near(state["anchor"], EYES["face_front_1.jpg"]), state["anchor"]
            assert d.execute_script("return document.body.classList.contains('mirrored')")
            _same_origin(d, base)
            print(f"\ntracking fps in headless Chromium (SwiftShader): {state['fps']}")


@pytest.mark.slow
def test_refused_camera_and_missing_webgl_get_clear_messages(app: Any, tmp_path: Path) -> None:
    """No camera permission: a message and the photo picker; no WebGL: a message."""
    from selenium.webdriver.common.by import By

    _ingest(app, tmp_path, "watch")
    # A fake camera without the fake permission prompt: headless Chromium refuses it.
    with headless_chromium(
        tmp_path / "p1",
        window="900,900",
        flags=[*SWIFTSHADER, "--use-fake-device-for-media-stream"],
    ) as d:
        for base in _serve(app):
            d.get(f"{base}/ar/try/watch")
            _wait(d, "return window.shoplensTryOn && shoplensTryOn.ready")
            state = d.execute_script("return shoplensTryOn")
            assert state["status"] == "error" and "camera" in state["message"], state
            assert d.find_element(By.ID, "photo-pick").is_displayed()
            state = _show(d, "hand_wrist_1.jpg")  # and the photo mode works
            assert state["status"] == "tracking" and _near(
                state["anchor"], WRISTS["hand_wrist_1.jpg"]
            )
    with headless_chromium(tmp_path / "p2", window="900,900", flags=["--disable-3d-apis"]) as d:
        for base in _serve(app):
            d.get(f"{base}/ar/try/watch?mode=photo")
            _wait(d, "return window.shoplensTryOn && shoplensTryOn.status === 'error'")
            assert "WebGL" in d.execute_script("return shoplensTryOn.message")


@pytest.mark.slow
def test_shoe_variants_switch_and_a_picture_is_saved(
    app: Any, server: str, driver: Any, tmp_path: Path
) -> None:
    """KHR_materials_variants: the picker lists the shoe's variants and one repaints it;
    "Take a picture" gives a PNG of what is shown."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    _ingest(app, tmp_path, "shoe")
    _open(driver, server, "shoe")
    state = _show(driver, "body_1.jpg")
    assert state["status"] == "tracking"
    picker = driver.find_element(By.ID, "variant")
    names = [o.text for o in Select(picker).options]
    assert names == ["As modelled", "midnight", "beach", "street"], names
    before = _picture(driver, True)
    Select(picker).select_by_visible_text("beach")
    _wait(driver, "return shoplensTryOn.variant === 1")
    after = _picture(driver, True)
    changed = np.abs(after - before).max(axis=2) > 40
    assert changed.mean() > 0.001, "the variant did not repaint the shoes"
    driver.find_element(By.ID, "shoot").click()
    saved = driver.find_element(By.ID, "saved")
    assert saved.is_displayed() and saved.get_attribute("href").startswith("data:image/png")
