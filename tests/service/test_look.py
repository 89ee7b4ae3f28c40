"""Shop the look: ``POST /v1/search?regions=auto`` on generated scenes (demo catalog
photos pasted onto one canvas), against a real app and index. Tests whose answer
depends on what the model sees use the real default model (``real_model``)."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.service.helpers import search
from tests.service.look_scenes import PLACED, jpeg, on_product, scene

REGION_KEYS = {"box", "score", "label", "results"}


def _regions(client: TestClient, data: bytes, **params: Any) -> dict[str, Any]:
    r = search(client, data, regions="auto", **params)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    assert all(set(region) == REGION_KEYS for region in body["regions"])
    return body


def _region_of(body: dict[str, Any], product_id: str) -> dict[str, Any]:
    """The best region whose first result is ``product_id``."""
    found = [r for r in body["regions"] if r["results"][0]["product_id"] == product_id]
    assert found, [(r["box"], r["results"][0]["product_id"]) for r in body["regions"]]
    return found[0]


@pytest.mark.real_model
def test_each_pasted_product_is_found_in_its_own_region(client: TestClient) -> None:
    shown = scene()
    body = _regions(client, jpeg(shown.image), k=3)
    regions = body["regions"]
    # The three products are the three best regions, each where it was pasted.
    assert {r["results"][0]["product_id"] for r in regions[:3]} == set(shown.boxes)
    for product_id, box in shown.boxes.items():
        region = _region_of(body, product_id)
        assert on_product(box, region["box"]), (product_id, box, region["box"])
        assert len(region["results"]) == 3
    scores = [r["score"] for r in regions]
    assert scores == sorted(scores, reverse=True)
    for r in regions:
        b = r["box"]
        assert min(b["x"], b["y"]) >= 0 and b["x"] + b["w"] <= 1 and b["y"] + b["h"] <= 1
    # The whole-photo answer is there too, as without regions.
    assert len(body["results"]) == 3


@pytest.mark.real_model
def test_boxes_are_in_display_coordinates_of_an_exif_rotated_photo(client: TestClient) -> None:
    shown = scene()
    body = _regions(client, jpeg(shown.image, orientation=6), k=3)
    for product_id, box in shown.boxes.items():
        found = _region_of(body, product_id)["box"]
        assert on_product(box, found), (product_id, box, found)


@pytest.mark.real_model
def test_filters_apply_to_every_region(client: TestClient) -> None:
    shown = scene()
    body = _regions(client, jpeg(shown.image), k=4, category="Pepper")
    assert body["regions"]
    for region in [body, *body["regions"]]:
        assert region["results"] and {r["category"] for r in region["results"]} == {"Pepper"}
    assert _region_of(body, "red-bell-pepper")["label"] == "Pepper"
    # A filter no result passes leaves no region (and no whole-photo result).
    body = _regions(client, jpeg(shown.image), min_score=0.999)
    assert body["regions"] == [] and body["results"] == []


@pytest.mark.real_model
def test_regions_inside_a_crop_have_boxes_of_the_whole_photo(client: TestClient) -> None:
    shown = scene()
    body = _regions(client, jpeg(shown.image), k=3, crop="0.35,0,0.65,1")
    box = _region_of(body, "oatly-oat-milk")["box"]
    assert on_product(shown.boxes["oatly-oat-milk"], box), box
    assert all(r["box"]["x"] >= 0.35 - 1e-3 for r in body["regions"])
    assert "banana" not in {r["results"][0]["product_id"] for r in body["regions"]}


def test_without_the_parameter_there_is_no_regions_field(client: TestClient) -> None:
    data = jpeg(scene().image)
    plain = search(client, data, k=5)
    assert plain.status_code == 200 and "regions" not in plain.json()
    looked = _regions(client, data, k=5)
    # Asking for regions does not change the whole-photo results.
    assert looked["results"] == plain.json()["results"]
    assert isinstance(looked["regions"], list)
    assert all(len(r["results"]) <= 5 for r in looked["regions"])


@pytest.mark.parametrize("value", ["yes", "", "AUTO", "auto,people"])
def test_unknown_regions_value_is_400(client: TestClient, value: str) -> None:
    r = search(client, jpeg(scene(PLACED[:1]).image), regions=value)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["code"] == "bad_parameter" and "regions" in error["message"]


def test_openapi_documents_regions(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    op = spec["paths"]["/v1/search"]["post"]
    (param,) = [p for p in op["parameters"] if p["name"] == "regions"]
    assert "auto" in str(param["schema"])
    schemas = spec["components"]["schemas"]
    region = schemas["SearchRegion"]["properties"]
    assert set(region) == REGION_KEYS
    assert set(schemas["RegionBox"]["properties"]) == {"x", "y", "w", "h"}
    assert "display" in op["description"] or "EXIF" in op["description"]
