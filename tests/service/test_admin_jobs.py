"""Re-index jobs through the admin API: the real app, real SQLite, the stand-in model."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from tests.held_embedder import HeldEmbedder
from tests.service.conftest import AppFactory
from tests.service.helpers import jpeg_bytes, search, synthetic_photo
from tests.service.jobs_helpers import (
    AUTH,
    SearchLoop,
    finished,
    generated_manifest,
    release_on_shutdown,
    wait_job,
)

JOB_KEYS = {
    "job_id",
    "state",
    "manifest",
    "prune",
    "created_at",
    "started_at",
    "finished_at",
    "attempts",
    "progress",
    "counts",
    "rejects",
    "rejects_total",
    "rejects_path",
    "seconds",
    "error",
    "snapshot_id",
    "kind",
    "learn",
}


def _reindex(client: TestClient, manifest: Path | str, prune: bool = False) -> str:
    r = client.post(
        "/v1/admin/reindex", json={"manifest": str(manifest), "prune": prune}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    job_id: str = r.json()["job_id"]
    return job_id


def _get(client: TestClient) -> Callable[[str], Any]:
    return lambda path: client.get(path, headers=AUTH)


def test_admin_routes_need_the_token(make_client: AppFactory, data_dir: Path) -> None:
    body = {"manifest": "/nope.csv", "prune": False}
    with make_client(data_dir) as client:
        r = client.post("/v1/admin/reindex", json=body)
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
        r = client.post("/v1/admin/reindex", json=body, headers={"Authorization": "Bearer no"})
        assert r.status_code == 401
        assert client.get("/v1/admin/jobs/x").status_code == 401
    with make_client(data_dir, admin_token=None) as client:
        r = client.post("/v1/admin/reindex", json=body, headers=AUTH)
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_bad_requests(client: TestClient, tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    r = client.post("/v1/admin/reindex", json={"manifest": str(missing)}, headers=AUTH)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "bad_parameter" and str(missing) in err["message"]
    r = client.post("/v1/admin/reindex", json={"manifest": str(tmp_path)}, headers=AUTH)
    assert r.status_code == 400 and "is not a file" in r.json()["error"]["message"]
    for body in ({}, {"manifest": ""}, {"manifest": "x", "prune": "maybe"}, {"manifest": 3}):
        r = client.post("/v1/admin/reindex", json=body, headers=AUTH)
        assert r.status_code == 400, (body, r.text)
    r = client.get("/v1/admin/jobs/job-unknown", headers=AUTH)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_cli_run_on_the_data_dir_is_a_conflict(
    client: TestClient, data_dir: Path, tmp_path: Path
) -> None:
    from shoplens.indexer.ops.build import run_lock

    manifest = generated_manifest(tmp_path / "cat", range(9500, 9501))
    with run_lock(Settings(data_dir=data_dir)):  # what `shoplens index` holds while it runs
        r = client.post("/v1/admin/reindex", json={"manifest": str(manifest)}, headers=AUTH)
    assert r.status_code == 409 and "shoplens index" in r.json()["error"]["message"], r.text
    job = wait_job(_get(client), _reindex(client, manifest), 120, finished)
    assert job["state"] == "succeeded" and job["counts"]["indexed"] == 1


def test_job_indexes_reports_and_matches_the_cli(
    make_client: AppFactory,
    data_dir: Path,
    built_data_dir: Path,
    embedder: ImageEmbedder,
    tmp_path: Path,
) -> None:
    from shoplens.indexer.ops.build import run_index

    manifest = generated_manifest(tmp_path / "cat", range(9000, 9012), bad_rows=2)
    with make_client(data_dir) as client:
        before = client.get("/readyz").json()
        job_id = _reindex(client, manifest)
        job = wait_job(_get(client), job_id, 180, finished)
        assert set(job) == JOB_KEYS
        assert job["state"] == "succeeded", job
        assert job["manifest"] == str(manifest.resolve()) and job["prune"] is False
        assert job["counts"] == {"indexed": 12, "unchanged": 0, "rejected": 2, "removed": 0}
        assert job["rejects_total"] == 2 and len(job["rejects"]) == 2
        assert job["rejects"][0] == {
            "line": 14,
            "product_id": "bad-0",
            "reason": "image file not found: photos/missing-0.jpg",
        }
        assert Path(job["rejects_path"]).is_file()
        assert job["progress"]["done"] == job["progress"]["total"] == 14
        assert job["attempts"] == 1 and job["error"] is None
        assert job["created_at"] <= job["started_at"] <= job["finished_at"]
        assert job["snapshot_id"]
        # The new snapshot is live when the job says it succeeded.
        ready = client.get("/readyz").json()
        assert ready["index_version"] != before["index_version"]
        assert ready["products"] == before["products"] + 12
        photo = (manifest.parent / "photos" / "gen-09005.jpg").read_bytes()
        top = search(client, photo, k=1).json()["results"][0]
        assert top["product_id"] == "gen-09005" and top["score"] > 0.95

    # The CLI's code path on the same starting data dir gives the same counts.
    other = tmp_path / "other"
    shutil.copytree(built_data_dir, other)
    report = run_index(Settings(data_dir=other), manifest, embedder=embedder)
    assert (report.indexed, report.unchanged, report.rejected, report.removed) == (12, 0, 2, 0)

    # Prune: everything not in the manifest goes.
    with make_client(data_dir) as client:
        job = wait_job(_get(client), _reindex(client, manifest, prune=True), 180, finished)
        assert job["state"] == "succeeded", job
        assert job["counts"]["unchanged"] == 12 and job["counts"]["indexed"] == 0
        assert job["counts"]["removed"] == before["products"]
        assert client.get("/readyz").json()["products"] == 12


def test_failed_job_says_why_and_keeps_the_index(client: TestClient, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,picture\n1,a.jpg\n")
    before = client.get("/readyz").json()["index_version"]
    job = wait_job(_get(client), _reindex(client, bad), 60, finished)
    assert job["state"] == "failed" and "product_id" in job["error"], job
    assert job["counts"] is None and job["snapshot_id"] is None
    assert client.get("/readyz").json()["index_version"] == before
    # A failed job does not block the next one.
    assert _reindex(client, bad)


def test_searches_are_answered_during_a_job_and_one_job_runs_at_a_time(
    make_client: AppFactory, data_dir: Path, embedder: ImageEmbedder, tmp_path: Path
) -> None:
    manifest = generated_manifest(tmp_path / "cat", range(7000, 7240))
    photo = jpeg_bytes(synthetic_photo(3))  # synthetic-003 is in the indexed catalog
    held = HeldEmbedder(embedder, after=1)  # the job waits in its second batch till released

    with make_client(data_dir, model=held) as client:
        before = client.get("/readyz").json()
        with SearchLoop(lambda data: search(client, data, k=5), photo) as loop:
            job_id = _reindex(client, manifest)
            try:
                r = client.post("/v1/admin/reindex", json={"manifest": str(manifest)}, headers=AUTH)
                assert r.status_code == 409, r.text
                assert (
                    r.json()["error"]["code"] == "conflict"
                    and job_id in r.json()["error"]["message"]
                )
                running = wait_job(
                    _get(client),
                    job_id,
                    300,
                    lambda j: (
                        finished(j) or (j["state"] == "running" and j["progress"]["done"] > 0)
                    ),
                )
                assert running["state"] == "running", running
                p = running["progress"]
                assert p["total"] == 240 and p["rate_per_s"] > 0 and p["eta_s"] is not None
            finally:
                held.release()
            job = wait_job(_get(client), job_id, 600, finished)
        assert job["state"] == "succeeded", job
        assert job["counts"] == {"indexed": 240, "unchanged": 0, "rejected": 0, "removed": 0}
        assert loop.errors == [] and loop.answered > 0
        assert len(loop.versions) >= 1
        assert client.get("/readyz").json()["products"] == before["products"] + 240


def test_shutdown_interrupts_and_the_next_start_resumes(
    make_client: AppFactory,
    data_dir: Path,
    embedder: ImageEmbedder,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    manifest = generated_manifest(tmp_path / "cat", range(8000, 8150))
    held = HeldEmbedder(embedder, after=2)  # the job waits in its third batch of 32 ...
    with make_client(data_dir, model=held) as client:
        release_on_shutdown(client, held, monkeypatch)  # ... until the shutdown stops it
        job_id = _reindex(client, manifest)
        wait_job(_get(client), job_id, 300, lambda j: finished(j) or j["progress"]["done"] >= 40)
    with sqlite3.connect(data_dir / "catalog.db") as db:
        state, attempts = db.execute(
            "SELECT state, attempts FROM jobs WHERE job_id = ?", (job_id,)
        ).fetchone()
    assert (state, attempts) == ("interrupted", 1)
    with make_client(data_dir) as client:
        job = wait_job(_get(client), job_id, 300, finished)
        assert job["state"] == "succeeded" and job["attempts"] == 2, job
        counts = job["counts"]
        # The first attempt's committed batches are not embedded again.
        assert counts["unchanged"] >= 32 and counts["indexed"] + counts["unchanged"] == 150
        assert client.get("/v1/products/gen-08149").status_code == 200


def test_status_shows_the_last_job(client: TestClient, data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shoplens.cli import app

    manifest = generated_manifest(tmp_path / "cat", range(6000, 6003))
    job = wait_job(_get(client), _reindex(client, manifest), 120, finished)
    assert job["state"] == "succeeded"
    out = CliRunner().invoke(app, ["status", "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    assert f"last job   {job['job_id']} succeeded" in out.output
    assert "indexed 3, unchanged 0, rejected 0, removed 0" in out.output
