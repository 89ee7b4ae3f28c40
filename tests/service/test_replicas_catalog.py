"""Two service replicas (two real apps, each with its own live index) over one
PostgreSQL database and one shared data dir: an edit through one is served by
the other at once, and a newly published snapshot is swapped in by both.

The replicas poll only every 30 s here, so seeing a change within a few seconds
proves the NOTIFY path (``shoplens.db.notify``), not the polling fallback.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from tests.service.conftest import AppFactory
from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo
from tests.service.test_products import _put

POLL_S = 30.0  # the fallback: far slower than what the tests wait for
WAIT_S = 5.0


def _within(what: Callable[[], bool], seconds: float = WAIT_S) -> float:
    """Seconds until ``what()`` held (fails past ``seconds``)."""
    started = time.monotonic()
    while not what():
        assert time.monotonic() - started < seconds, "the other replica did not follow"
        time.sleep(0.01)
    return time.monotonic() - started


def _top(client: TestClient, photo: bytes) -> Any:
    return search(client, photo, k=3).json()["results"][0]["product_id"]


def test_an_edit_on_one_replica_is_served_by_the_other_at_once(
    make_client: AppFactory, pg_data_dir: Path, pg_url: str, admin: dict[str, str]
) -> None:
    photo = jpeg_bytes(synthetic_photo(7301))
    with (
        make_client(pg_data_dir, database_url=pg_url, reload_interval_s=POLL_S) as a,
        make_client(pg_data_dir, database_url=pg_url, reload_interval_s=POLL_S) as b,
    ):
        assert _top(b, demo_photo("banana")) == "banana"
        r = _put(a, "replica-widget", {"title": "Replicated wombat"}, [photo], admin)
        assert r.status_code == 201, r.text
        put_s = _within(lambda: b.get("/v1/products/replica-widget").status_code == 200)
        assert _top(b, photo) == "replica-widget"
        words = b.get("/v1/search", params={"q": "wombat"}).json()["results"]
        assert [x["product_id"] for x in words] == ["replica-widget"]

        assert b.delete("/v1/products/banana", headers=admin).status_code == 204
        delete_s = _within(lambda: a.get("/v1/products/banana").status_code == 404)
        assert "banana" not in [
            x["product_id"] for x in search(a, demo_photo("banana")).json()["results"]
        ]
        ready_a, ready_b = a.get("/readyz").json(), b.get("/readyz").json()
        assert ready_a["catalog_seq"] == ready_b["catalog_seq"]
        assert ready_a["index_version"] == ready_b["index_version"]
        print(
            f"followed: PUT on A seen on B after {put_s:.3f} s, "
            f"DELETE on B seen on A after {delete_s:.3f} s"
        )


def test_a_published_snapshot_is_swapped_in_by_every_replica(
    make_client: AppFactory,
    pg_data_dir: Path,
    pg_url: str,
    catalog_manifest: Path,
    embedder: ImageEmbedder,
) -> None:
    from shoplens.indexer.ops.build import run_index

    settings = Settings(data_dir=pg_data_dir, database_url=pg_url)
    with (
        make_client(pg_data_dir, database_url=pg_url, reload_interval_s=POLL_S) as a,
        make_client(pg_data_dir, database_url=pg_url, reload_interval_s=POLL_S) as b,
    ):
        first = a.get("/readyz").json()["snapshot_id"]
        assert b.get("/readyz").json()["snapshot_id"] == first
        # Another process (an indexing run) publishes: a file write on the shared
        # storage, then the pointer row and its NOTIFY.
        report = run_index(settings, catalog_manifest, embedder=embedder)
        assert report.snapshot_id != first
        assert not (pg_data_dir / "snapshots" / "CURRENT").exists()  # the row is the pointer
        for client in (a, b):
            _within(lambda c=client: c.get("/readyz").json()["snapshot_id"] == report.snapshot_id)
        assert _top(b, demo_photo("kiwi")) == "kiwi"


def test_a_nul_character_is_refused_on_postgres_too(
    make_client: AppFactory, pg_data_dir: Path, pg_url: str, admin: dict[str, str]
) -> None:
    photo = jpeg_bytes(synthetic_photo(7302))
    with make_client(pg_data_dir, database_url=pg_url) as a:
        for meta in ({"title": "bad\u0000title"}, {"col\u0000our": "red"}):
            r = _put(a, "nul-widget", meta, [photo], admin)
            assert r.status_code == 422, r.text
            assert "NUL" in r.json()["error"]["message"]
        assert a.get("/v1/products/nul-widget").status_code == 404
        assert a.get("/v1/products/banana").status_code == 200
