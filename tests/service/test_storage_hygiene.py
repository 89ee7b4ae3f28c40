"""Storage hygiene with the real app and model: the renditions cache stays in its budget."""

from __future__ import annotations

import os
import time
from io import BytesIO
from pathlib import Path

from PIL import Image

from shoplens.config import Settings
from shoplens.indexer.disk_lru import MIB
from tests.service.conftest import AppFactory
from tests.service.helpers import demo_photo, search

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
