"""Storage hygiene with the real app (stand-in model): the renditions cache stays in its
budget, and `shoplens gc` after API edits removes exactly what nothing uses."""

from __future__ import annotations

import hashlib
import json
import os
import time
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.files.disk_lru import MIB
from shoplens.indexer.catalog.photos import image_id_for, photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.ops.gc import collect_garbage
from shoplens.indexer.serving.snapshot import load_snapshot
from shoplens.models.base import ImageEmbedder
from tests.service.conftest import AppFactory
from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo

JPEG = {"Accept": "image/jpeg"}


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _rendition(cache: Path, image_id: str, width: int) -> Path:
    return cache / image_id[:2] / f"{image_id}-w{width}.jpeg"


def _set_age(path: Path, seconds: float) -> None:
    when = time.time() - seconds
    os.utime(path, (when, when))


def test_renditions_stay_in_budget_and_evicted_ones_are_served_again(
    make_client: AppFactory, data_dir: Path
) -> None:
    cache = Settings(data_dir=data_dir).renditions_cache_dir
    with make_client(data_dir, renditions_cache_max_mb=1) as client:
        url = search(client, demo_photo("banana")).json()["results"][0]["image_url"]
        image_id = url.rsplit("/", 1)[1]
        hot, cold = (client.get(url, params={"w": w}, headers=JPEG) for w in (128, 96))
        assert hot.status_code == cold.status_code == 200
        for path in (_rendition(cache, image_id, 128), _rendition(cache, image_id, 96)):
            _set_age(path, 7200)
        # w=128 is asked for again (a hit from the disk cache): it becomes recent.
        assert client.get(url, params={"w": 128}, headers=JPEG).content == hot.content

    # Renditions of other photos fill the cache past its budget meanwhile, an hour old.
    filler = cache / "ff"
    filler.mkdir(parents=True, exist_ok=True)
    for i in range(24):
        path = filler / f"ff{i:018d}-w512.webp"
        path.write_bytes(os.urandom(50_000))
        _set_age(path, 3600 - i)
    assert _size(cache) > MIB

    with make_client(data_dir, renditions_cache_max_mb=1) as client:
        new = client.get(url, params={"w": 64}, headers=JPEG)  # a miss: written, then evicts
        assert new.status_code == 200
        assert _size(cache) <= MIB
        assert _rendition(cache, image_id, 128).is_file()  # recently used: kept
        assert _rendition(cache, image_id, 64).is_file()  # just made: kept
        assert not _rendition(cache, image_id, 96).exists()  # least recently used: evicted
        assert (filler / "ff000000000000000023-w512.webp").is_file()  # newest filler kept
        assert not (filler / "ff000000000000000000-w512.webp").exists()

        again = client.get(url, params={"w": 96}, headers=JPEG)
        assert again.status_code == 200
        assert again.headers["etag"] == cold.headers["etag"]
        assert again.content == cold.content
        assert Image.open(BytesIO(again.content)).size == (96, 96)
        assert _rendition(cache, image_id, 96).is_file()
        assert _size(cache) <= MIB


def _put(client: TestClient, pid: str, photos: list[bytes], admin: dict[str, str]) -> Any:
    files = [("image", (f"p{i}.jpg", data, "image/jpeg")) for i, data in enumerate(photos)]
    r = client.put(
        f"/v1/products/{pid}", data={"meta": json.dumps({"title": pid})}, files=files, headers=admin
    )
    assert r.status_code in (200, 201), r.text
    return r.json()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _top(client: TestClient, data: bytes) -> str:
    r = search(client, data, k=3)
    assert r.status_code == 200, r.text
    top: str = r.json()["results"][0]["product_id"]
    return top


def test_gc_after_api_deletes_and_replacements(
    make_client: AppFactory, data_dir: Path, admin: dict[str, str], embedder: ImageEmbedder
) -> None:
    settings = Settings(data_dir=data_dir)
    gone, first, second, shared = (jpeg_bytes(synthetic_photo(s)) for s in (7001, 7002, 7003, 7004))
    with make_client(data_dir) as c:
        _put(c, "gc-gone", [gone], admin)
        assert c.get(f"/v1/images/{image_id_for(_sha(gone))}", headers=JPEG).status_code == 200
        _put(c, "gc-replaced", [first], admin)
        _put(c, "gc-replaced", [second], admin)  # replaces the photo
        _put(c, "gc-a", [shared], admin)
        _put(c, "gc-b", [shared], admin)
        indexed = c.get("/v1/products/synthetic-001").json()["images"][0]["image_id"]
        with CatalogStore(settings.db_path) as store:
            found = store.find_image(indexed)
        assert found is not None
        in_snapshot = found.sha256
        for pid in ("gc-a", "gc-gone", "synthetic-001"):
            assert c.delete(f"/v1/products/{pid}", headers=admin).status_code == 204

        orphans = [_sha(gone), _sha(first)]
        kept = [_sha(second), _sha(shared), in_snapshot]
        rendition = next(settings.renditions_cache_dir.rglob(f"{image_id_for(orphans[0])}-w*"))
        freed = sum(photo_path(data_dir, s).stat().st_size for s in orphans)
        freed += rendition.stat().st_size

        # Just written: within the grace period, gc leaves them alone.
        young = collect_garbage(settings)
        assert (young.photos, young.embeddings, young.young) == (0, 0, 2)
        dry = collect_garbage(settings, dry_run=True, grace_s=0)
        assert (dry.photos, dry.embeddings, dry.renditions) == (2, 2, 1)
        assert all(photo_path(data_dir, s).is_file() for s in orphans) and rendition.is_file()

        # While the service runs, as an operator would.
        r = collect_garbage(settings, grace_s=0)
        assert (r.photos, r.embeddings, r.renditions) == (2, 2, 1)
        assert r.snapshot_only == 1  # synthetic-001: deleted, but the snapshot lists it
        assert r.photo_bytes + r.rendition_bytes == freed == r.bytes_freed
        assert not any(photo_path(data_dir, s).exists() for s in orphans)
        assert not rendition.exists()
        assert all(photo_path(data_dir, s).is_file() for s in kept)
        with CatalogStore(settings.db_path) as store:
            assert store.embedded_shas(embedder.name, orphans + kept) == set(kept)

        assert _top(c, shared) == "gc-b"
        assert _top(c, second) == "gc-replaced"
        assert _top(c, demo_photo("banana")) == "banana"
        b_image = c.get("/v1/products/gc-b").json()["images"][0]["image_id"]
        assert c.get(f"/v1/images/{b_image}", headers=JPEG).status_code == 200
        assert c.get(f"/v1/images/{image_id_for(orphans[0])}").status_code == 404

    load_snapshot(settings, embedder.name)  # the published snapshot still loads
    with make_client(data_dir) as c:  # and the service starts again on what is left
        assert c.get("/readyz").status_code == 200
        assert _top(c, shared) == "gc-b"
        assert _top(c, second) == "gc-replaced"
        assert c.get("/v1/products/gc-gone").status_code == 404
