"""Re-index jobs against a real `shoplens serve` process: SIGKILL mid-job and
resume; the grocery catalog re-indexed through the API while shoppers search."""

from __future__ import annotations

import csv
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from tests.service.jobs_helpers import (
    AUTH,
    REPO,
    SearchLoop,
    finished,
    generated_manifest,
    serve,
    wait_job,
)

pytestmark = [pytest.mark.slow, pytest.mark.real_model]  # `shoplens serve` loads the real model

SEED = 20  # generated products the served data dir starts with


def _seeded(tmp_path: Path, embedder: ImageEmbedder) -> Path:
    from shoplens.indexer.ops.build import run_index

    data = tmp_path / "data"
    run_index(
        Settings(data_dir=data),
        generated_manifest(tmp_path / "seed", range(100, 100 + SEED)),
        embedder=embedder,
    )
    return data


def _search(c: httpx.Client, photo: bytes) -> httpx.Response:
    return c.post("/v1/search", params={"k": 5}, files={"image": ("q.jpg", photo, "image/jpeg")})


@pytest.mark.timeout(1500)
def test_sigkilled_service_resumes_its_job(tmp_path: Path, embedder: ImageEmbedder) -> None:
    data = _seeded(tmp_path, embedder)
    manifest = generated_manifest(tmp_path / "cat", range(11000, 11300))
    with serve(data, tmp_path / "serve-1.log") as served, served.client() as c:
        r = c.post("/v1/admin/reindex", json={"manifest": str(manifest)}, headers=AUTH)
        assert r.status_code == 202, r.text
        job_id = r.json()["job_id"]
        job = wait_job(
            lambda p: c.get(p, headers=AUTH),
            job_id,
            600,
            lambda j: finished(j) or j["progress"]["done"] >= 100,
        )
        assert job["state"] == "running", job
        served.kill()
    with sqlite3.connect(data / "catalog.db") as db:
        row = db.execute("SELECT state, attempts FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        embedded = db.execute("SELECT COUNT(*) FROM idx_embeddings").fetchone()[0]
    assert row == ("running", 1)  # what a killed process leaves behind
    assert embedded >= SEED + 64  # committed batches survive the kill

    with serve(data, tmp_path / "serve-2.log") as served, served.client() as c:
        job = wait_job(lambda p: c.get(p, headers=AUTH), job_id, 900, finished)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        counts = job["counts"]
        assert counts["indexed"] + counts["unchanged"] == 300 and counts["rejected"] == 0
        assert counts["unchanged"] >= 64  # the killed attempt's batches were not embedded again
        assert c.get("/readyz").json()["products"] == SEED + 300
        photo = (manifest.parent / "photos" / "gen-11299.jpg").read_bytes()
        assert _search(c, photo).json()["results"][0]["product_id"] == "gen-11299"


def _cli_counts(manifest: Path, data_dir: Path) -> tuple[dict[str, int], float]:
    env = {**os.environ, "SHOPLENS_DATA_DIR": str(data_dir)}
    started = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "shoplens.cli", "index", str(manifest)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    seconds = time.monotonic() - started
    assert p.returncode == 0, p.stderr[-3000:]
    m = re.search(r"indexed (\d+), unchanged (\d+), rejected (\d+), removed (\d+)", p.stdout)
    assert m is not None, p.stdout
    keys = ("indexed", "unchanged", "rejected", "removed")
    return dict(zip(keys, map(int, m.groups()), strict=True)), seconds


@pytest.mark.timeout(3000)
def test_grocery_reindex_through_the_api_while_searching(
    grocery_dir: Path, tmp_path: Path, embedder: ImageEmbedder
) -> None:
    """The done-when check: numbers go to stdout (run with -s) and beside the data."""
    manifest = grocery_dir / "catalog.csv"
    with manifest.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    photo = (grocery_dir / rows[0]["image"]).read_bytes()
    data = _seeded(tmp_path, embedder)
    numbers: dict[str, Any] = {}
    with (
        serve(data, tmp_path / "serve.log") as served,
        served.client() as c,
        served.client() as searcher,
    ):
        with SearchLoop(lambda b: _search(searcher, b), photo) as loop:
            started = time.monotonic()
            r = c.post("/v1/admin/reindex", json={"manifest": str(manifest)}, headers=AUTH)
            assert r.status_code == 202, r.text
            job = wait_job(lambda p: c.get(p, headers=AUTH), r.json()["job_id"], 2400, finished)
            numbers["job_seconds"] = round(time.monotonic() - started, 1)
        assert job["state"] == "succeeded", job
        ready = c.get("/readyz").json()
        top = _search(c, photo).json()["results"][0]
    numbers.update(
        job_counts=job["counts"],
        job_run_seconds=job["seconds"],
        searches_answered=loop.answered,
        search_errors=len(loop.errors),
        index_versions_seen=len(loop.versions),
        products_after=ready["products"],
        top_after=top["product_id"],
    )
    cli_counts, cli_seconds = _cli_counts(manifest, tmp_path / "cli-data")
    numbers.update(cli_counts=cli_counts, cli_seconds=round(cli_seconds, 1))
    print("DONE-WHEN " + json.dumps(numbers))
    (tmp_path / "done_when.json").write_text(json.dumps(numbers, indent=2))

    assert loop.errors == [], loop.errors[:5]
    # The seed snapshot, then the job's. (A version is "snapshot:catalog seq"; the job's
    # catalog commit, made once every photo is embedded, can show up as a second seq
    # of the seed snapshot just before the new snapshot is published.)
    snapshots_seen = {v.split(":")[0] for v in loop.versions}
    assert loop.answered > 0 and len(snapshots_seen) == 2
    assert job["counts"] == cli_counts
    assert job["counts"]["rejected"] == 0 and job["counts"]["indexed"] > 2000
    assert ready["products"] == SEED + len({row["product_id"] for row in rows})
