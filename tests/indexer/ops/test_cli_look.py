"""`shoplens search PHOTO --regions` as a user runs it: a generated scene (demo catalog
photos pasted onto one canvas) against the demo catalog indexed with the real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoplens import demo
from tests.indexer.ops.test_cli import shoplens
from tests.service.look_scenes import jpeg, on_product, scene

pytestmark = pytest.mark.real_model


@pytest.mark.usefixtures("embedder")  # exported once per machine, then cached
def test_search_regions_prints_each_region_and_its_products(tmp_path: Path) -> None:
    data = tmp_path / "data"
    p = shoplens("index", str(demo.DEMO_DIR / "manifest.csv"), data_dir=data)
    assert p.returncode == 0, p.stderr
    shown = scene()
    photo = tmp_path / "scene.jpg"
    photo.write_bytes(jpeg(shown.image, orientation=6))

    p = shoplens("search", str(photo), "--regions", "--k", "2", "--json", data_dir=data)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert len(out["results"]) == 2
    first = {r["results"][0]["product_id"]: r for r in out["regions"]}
    assert set(shown.boxes) <= set(first)
    for product_id, box in shown.boxes.items():
        assert on_product(box, first[product_id]["box"]), product_id
        assert len(first[product_id]["results"]) == 2

    p = shoplens("search", str(photo), "--regions", "--k", "2", data_dir=data)
    assert p.returncode == 0, p.stderr
    assert "region 1  box " in p.stdout and "oatly-oat-milk" in p.stdout

    p = shoplens("search", "--text", "milk", "--regions", data_dir=data)
    assert p.returncode == 2 and "--regions needs a photo" in p.stderr
