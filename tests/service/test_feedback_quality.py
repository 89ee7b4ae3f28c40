"""The issue's "done when", on real photos: a studio catalog is indexed and served,
shoppers' photos are confirmed through the HTTP API, a learn job runs, and the
running service answers the held-out photos better without a restart.

Real model, real grocery data (``../shared``, skipped without it): slow.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any

import pytest

from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index
from shoplens.models.base import ImageEmbedder
from tests.service.conftest import AppFactory
from tests.service.helpers import search
from tests.service.jobs_helpers import AUTH, finished, wait_job

pytestmark = [pytest.mark.slow, pytest.mark.real_model, pytest.mark.shared]

PRODUCTS = 12  # the first products of the studio catalog (apples, pears, ...: look-alikes)
PER_PRODUCT = 5


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def _top1(client: Any, grocery: Path, queries: list[dict[str, str]]) -> tuple[float, str]:
    hits, version = 0, ""
    for q in queries:
        body = search(client, (grocery / q["image"]).read_bytes(), k=5).json()
        version = body["index_version"]
        hits += body["results"][0]["product_id"] == q["product_id"]
    return hits / len(queries), version


def test_confirmed_shopper_photos_make_the_running_service_better(
    grocery_dir: Path, tmp_path: Path, make_client: AppFactory, embedder: ImageEmbedder
) -> None:
    studio = _rows(grocery_dir / "catalog_studio.csv")[:PRODUCTS]
    products = {r["product_id"] for r in studio}
    manifest = tmp_path / "studio.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(studio[0]))
        w.writeheader()
        w.writerows({**r, "image": str(grocery_dir / r["image"])} for r in studio)
    data = tmp_path / "data"
    run_index(Settings(data_dir=data), manifest, embedder=embedder)
    studio_images = {r["image"] for r in _rows(grocery_dir / "catalog_studio.csv")}
    train: dict[str, list[str]] = {}
    for r in _rows(grocery_dir / "catalog.csv"):
        if r["product_id"] in products and r["image"] not in studio_images:
            train.setdefault(r["product_id"], []).append(r["image"])
    val = [q for q in _rows(grocery_dir / "queries_val.csv") if q["product_id"] in products]

    with make_client(data, learn_from_feedback=True) as client:
        before, version = _top1(client, grocery_dir, val)
        for pid, photos in train.items():
            for path in photos[:PER_PRODUCT]:
                # k = every product: the confirmed one is always among those shown.
                body = search(client, (grocery_dir / path).read_bytes(), k=PRODUCTS).json()
                r = client.post(
                    "/v1/feedback",
                    json={"search_id": body["search_id"], "product_id": pid, "event": "confirm"},
                )
                assert r.status_code == 202, r.text
        r = client.post("/v1/admin/learn", headers=AUTH)
        assert r.status_code == 202, r.text
        job = wait_job(lambda p: client.get(p, headers=AUTH), r.json()["job_id"], 120, finished)
        assert job["state"] == "succeeded", job
        assert job["learn"]["learnt"] >= PRODUCTS * PER_PRODUCT * 0.8
        time.sleep(0.5)
        after, new_version = _top1(client, grocery_dir, val)
    assert new_version != version
    assert after >= before + 0.1, (before, after)
