"""Two real `shoplens serve` replicas over one PostgreSQL database and one data dir.

What a load balancer in front of them relies on: an edit through either one is
served by both within a second, a re-index job started on one is served by
both, and killing one mid-write loses no acknowledged write while the other
keeps answering.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.service.helpers import jpeg_bytes, synthetic_photo
from tests.service.jobs_helpers import (
    AUTH,
    REPO,
    Served,
    finished,
    generated_manifest,
    serve,
    wait_job,
)

FOLLOW_S = 1.0  # the promise: an edit on one replica is served by all within a second


def _index(manifest: Path, env: dict[str, str]) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "shoplens.cli", "index", str(manifest)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Iterator[tuple[Served, Served, Path]]:
    data = tmp_path / "shared-data"
    env = {"SHOPLENS_DATA_DIR": str(data), "SHOPLENS_DATABASE_URL": pg_url}
    manifest = generated_manifest(tmp_path / "catalog", range(6))
    _index(manifest, env)
    with ExitStack() as stack:
        a = stack.enter_context(serve(data, tmp_path / "a.log", extra_env=env))
        b = stack.enter_context(serve(data, tmp_path / "b.log", extra_env=env))
        yield a, b, manifest


def _put(c: httpx.Client, product_id: str, seed: int) -> httpx.Response:
    photo = jpeg_bytes(synthetic_photo(seed, size=128))
    meta = {"title": f"Put {seed}", "category": "Gen", "price": "2.00", "currency": "EUR"}
    return c.put(
        f"/v1/products/{product_id}",
        data={"meta": json.dumps(meta)},
        files={"image": ("p.jpg", photo, "image/jpeg")},
        headers=AUTH,
    )


def _wait_for(check: Callable[[], bool], timeout_s: float) -> float | None:
    """Seconds until ``check()`` held, or None if it never did within ``timeout_s``."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if check():
            return time.monotonic() - started
        time.sleep(0.02)
    return None


def test_an_edit_on_one_replica_is_served_by_the_other(
    replicas: tuple[Served, Served, Path],
) -> None:
    a, b, manifest = replicas
    with a.client() as ca, b.client() as cb:
        photo = jpeg_bytes(synthetic_photo(9001, size=128))

        def b_finds_it() -> bool:
            r = cb.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
            return r.status_code == 200 and r.json()["results"][0]["product_id"] == "put-1"

        assert not b_finds_it()
        r = _put(ca, "put-1", 9001)
        assert r.status_code in (200, 201), r.text
        delay = _wait_for(b_finds_it, timeout_s=10 * FOLLOW_S)
        assert delay is not None and delay < FOLLOW_S, f"replica B followed after {delay}s"

        # A DELETE on B is gone on A.
        assert cb.delete("/v1/products/gen-00002", headers=AUTH).status_code in (200, 204)
        delay = _wait_for(
            lambda: ca.get("/v1/products/gen-00002").status_code == 404, timeout_s=10 * FOLLOW_S
        )
        assert delay is not None and delay < FOLLOW_S, f"replica A followed after {delay}s"

        # A re-index job started on A is served by both.
        extra = generated_manifest(manifest.parent.parent / "more", range(100, 104))
        r = ca.post("/v1/admin/reindex", json={"manifest": str(extra)}, headers=AUTH)
        assert r.status_code == 202, r.text
        job = wait_job(lambda p: ca.get(p, headers=AUTH), r.json()["job_id"], 300, finished)
        assert job["state"] == "succeeded", job
        version_a = ca.get("/readyz").json()["index_version"]

        def b_serves_it() -> bool:
            return bool(cb.get("/readyz").json()["index_version"] == version_a)

        assert _wait_for(b_serves_it, timeout_s=10.0) is not None
        # The job's snapshot is served by both: its new products answer on B.
        assert cb.get("/v1/products/gen-00101").status_code == 200
        assert ca.get("/v1/products/put-1").status_code == 200


@pytest.mark.slow
def test_killing_a_replica_mid_write_loses_no_acknowledged_write(
    replicas: tuple[Served, Served, Path],
) -> None:
    a, b, _ = replicas
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        with a.client(timeout=10.0) as ca:
            for i in range(10_000):
                if stop.is_set():
                    return
                try:
                    r = _put(ca, f"w-{i}", 20_000 + i)
                except httpx.TransportError:
                    return  # A is dead: this write was never acknowledged
                if r.status_code in (200, 201):
                    acknowledged.append(f"w-{i}")

    writer = threading.Thread(target=write)
    writer.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    a.kill()
    stop.set()
    writer.join(30)
    assert len(acknowledged) >= 5
    with b.client() as cb:
        photo = jpeg_bytes(synthetic_photo(3, size=128))
        r = cb.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert r.status_code == 200, r.text
        time.sleep(FOLLOW_S)
        missing = [p for p in acknowledged if cb.get(f"/v1/products/{p}").status_code != 200]
        assert missing == []
