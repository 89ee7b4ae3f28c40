"""GET /v1/search?q= end to end with an OpenCLIP model (tiny, randomly initialised).

Random weights say nothing about quality; this checks the wiring: the service
loads the text tower from the registry, embeds the query into the index's
space and answers the same result shape as photo search.
"""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.demo import DEMO_DIR
from tests.service.helpers import demo_photo, search
from tests.support import tiny_openclip_checkpoint

torch = pytest.importorskip("torch")
open_clip = pytest.importorskip("open_clip")

pytestmark = pytest.mark.real_model  # a real OpenCLIP export, and the default model

PRODUCTS = ("banana", "kiwi", "lime", "cucumber", "oatly-oat-milk", "arla-standard-milk")


@pytest.fixture(scope="module")
def clip_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    from shoplens.indexer.ops.build import run_index

    folder = tmp_path_factory.mktemp("tiny-clip")
    settings = Settings(
        model="open_clip:tiny",
        openclip_checkpoint=tiny_openclip_checkpoint(folder),
        model_cache_dir=folder / "model-cache",
        data_dir=folder / "data",
        reload_interval_s=0.2,
    )
    manifest = folder / "manifest.csv"
    manifest.write_text(
        "product_id,title,category,price,currency,image\n"
        + "".join(
            f"{p},{p.replace('-', ' ').title()},{'Milk' if 'milk' in p else 'Produce'},"
            f"{10 + i},EUR,{DEMO_DIR}/images/{p}.jpg\n"
            for i, p in enumerate(PRODUCTS)
        ),
        encoding="utf-8",
    )
    run_index(settings, manifest)
    return settings


def test_text_search_with_an_openclip_model(clip_settings: Settings) -> None:
    from shoplens.service.app import create_app

    with TestClient(create_app(clip_settings)) as client:
        r = client.get("/v1/search", params={"q": "a bunch of bananas", "k": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model"] == "open_clip:tiny"
        assert len(body["results"]) == 4
        assert len({x["product_id"] for x in body["results"]}) == 4
        assert set(body["results"][0]) >= {"product_id", "score", "image_url", "ar"}
        # Filters apply to text search too.
        milk = client.get(
            "/v1/search", params={"q": "milk", "category": "Milk", "max_price": 100}
        ).json()["results"]
        assert {x["product_id"] for x in milk} == {"oatly-oat-milk", "arla-standard-milk"}
        # The same app still searches by photo (its own image tower).
        top = search(client, demo_photo("kiwi")).json()["results"][0]
        assert top["product_id"] == "kiwi"
        assert 'shoplens_embed_seconds_count{kind="text"} 2.0' in client.get("/metrics").text


def test_a_snapshot_from_another_model_is_refused(clip_settings: Settings) -> None:
    from shoplens.service.app import create_app

    # The default model (its export cached machine-wide) on a data dir indexed by another.
    other = clip_settings.model_copy(
        update={"model": "effnet-lite0", "model_cache_dir": Settings().model_cache_dir}
    )
    with TestClient(create_app(other)) as client:
        r = client.get("/readyz")
        assert r.status_code == 503
        err = r.json()["error"]
        assert err["code"] == "not_ready"
        assert "open_clip:tiny" in err["message"], err
        assert search(client, demo_photo("kiwi")).status_code == 503
