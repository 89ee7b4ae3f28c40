"""An admin re-index job shows nothing of its catalog before its snapshot is published,
and one whose publish fails shows nothing at all: the real app, real SQLite, the stand-in model.

The fault is injected at the real publish step (the atomic write of the
snapshot pointer, CURRENT), in the job's own thread, while the app's reload
loop polls the store every 0.2 s.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shoplens.indexer.serving import pointer as pointer_mod
from shoplens.indexer.serving.snapshot import CURRENT
from tests.service.conftest import AppFactory
from tests.service.helpers import search
from tests.service.jobs_helpers import AUTH, finished, generated_manifest, wait_job

RELOAD_TICKS_S = 1.0  # several of the test app's 0.2 s reload ticks


def _served(client: TestClient, photo: bytes) -> dict[str, Any]:
    ready = client.get("/readyz").json()
    hits = search(client, photo, k=5).json()["results"]
    return {
        "version": ready["index_version"],
        "products": ready["products"],
        "new": client.get("/v1/products/gen-09601").status_code,
        "kiwi": client.get("/v1/products/kiwi").status_code,
        "hits": [(h["product_id"], h["title"], h["image_url"], h["score"]) for h in hits],
    }


def _job(client: TestClient, manifest: Path) -> dict[str, Any]:
    r = client.post(
        "/v1/admin/reindex", json={"manifest": str(manifest), "prune": True}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    return wait_job(lambda p: client.get(p, headers=AUTH), r.json()["job_id"], 300, finished)


def test_reindex_job_is_invisible_until_published_and_changes_nothing_if_that_fails(
    make_client: AppFactory, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With prune: the job adds gen-09600.. and removes every product already there.
    manifest = generated_manifest(tmp_path / "cat", range(9600, 9604))
    photo = (manifest.parent / "photos" / "gen-09601.jpg").read_bytes()
    real = pointer_mod.write_atomic
    during: list[dict[str, Any]] = []
    fail = True

    with make_client(data_dir) as client:
        before = _served(client, photo)
        assert before["new"] == 404 and before["kiwi"] == 200

        def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
            if path.name == CURRENT:  # the job's snapshot is written, not yet published
                time.sleep(RELOAD_TICKS_S)
                during.append(_served(client, photo))
                if fail:
                    raise OSError(errno.ENOSPC, "No space left on device (injected)")
            real(path, data, fsync=fsync)

        monkeypatch.setattr(pointer_mod, "write_atomic", write_atomic)
        job = _job(client, manifest)
        assert job["state"] == "failed" and "injected" in job["error"], job
        time.sleep(RELOAD_TICKS_S)
        assert during == [before]
        assert _served(client, photo) == before

        fail = False
        job = _job(client, manifest)
        assert job["state"] == "succeeded", job
        assert during[1] == before  # the retry too, up to its switch
        after = _served(client, photo)
        assert after["new"] == 200 and after["kiwi"] == 404 and after["products"] == 4
        assert after["hits"][0][0] == "gen-09601"
