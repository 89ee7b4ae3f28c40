"""Jobs across replicas over one PostgreSQL database: one job at a time, and a job
whose runner died is taken over by another replica and finishes.

Real runners (``JobRunner``) over a real server (``tests/pg.py``), real
re-index runs with the deterministic test embedder; the "dead" replica is a
process killed with SIGKILL mid-job. Skipped where PostgreSQL cannot run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pydantic import SecretStr

from shoplens.config import Settings
from shoplens.indexer.ops.job_store import JobStore
from shoplens.indexer.ops.jobs import JobRunner
from shoplens.models.base import ImageEmbedder
from tests.held_embedder import HeldEmbedder
from tests.indexer.helpers import HistEmbedder, write_catalog

REPO = Path(__file__).resolve().parents[3]


def _settings(data_dir: Path, url: str, **kw: Any) -> Settings:
    base: dict[str, Any] = {"batch_size": 4, "replica_heartbeat_s": 0.2, "replica_stale_s": 1.0}
    return Settings(data_dir=data_dir, database_url=SecretStr(url), **{**base, **kw})


@contextmanager
def _runner(settings: Settings, embedder: ImageEmbedder, owner: str) -> Iterator[JobRunner]:
    runner = JobRunner(settings, embedder, owner=owner)
    runner.start()
    try:
        yield runner
    finally:
        runner.stop()


def _wait(store: JobStore, job_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = store.get(job_id)
        assert job is not None
        if job["state"] in ("succeeded", "failed"):
            return job
        time.sleep(0.05)
    pytest.fail(f"job {job_id} did not finish: {store.get(job_id)}")


def test_two_runners_never_run_two_jobs_at_once(tmp_path: Path, pg_url: str) -> None:
    manifest = write_catalog(tmp_path / "cat", 6, 2)
    data = tmp_path / "data"
    held = HeldEmbedder(HistEmbedder(), after=1, timeout_s=60)
    # A heartbeats far too slowly: its row looks stale to B within a second, yet A
    # is alive and holds the job lock, so B must not take the job.
    slow_a = _settings(data, pg_url, replica_heartbeat_s=60.0)
    store = JobStore(pg_url)
    try:
        with _runner(slow_a, held, "replica-a") as a:
            job_id = a.submit(str(manifest), prune=False)
            assert held.held.wait(30), "A never started the job"
            with _runner(_settings(data, pg_url), HistEmbedder(), "replica-b") as b:
                # B sees the running job and refuses a second submission...
                with pytest.raises(Exception, match="one job runs at a time"):
                    b.submit(str(manifest), prune=False)
                time.sleep(2.5)  # > replica_stale_s: the row is stale, the lock is not free
                job = store.get(job_id)
                assert job is not None
                assert (job["state"], job["owner"], job["attempts"]) == ("running", "replica-a", 1)
                held.release()
                done = _wait(store, job_id)
            assert done["state"] == "succeeded", done["error"]
            assert (done["owner"], done["attempts"]) == ("replica-a", 1)
            assert done["counts"]["indexed"] == 12  # 6 products x 2 photos
    finally:
        held.release()
        store.close()


def test_an_orphaned_running_job_is_resumed_by_another_replica(tmp_path: Path, pg_url: str) -> None:
    """A row left ``running`` by a replica that is gone (no lock holder, stale heartbeat)."""
    manifest = write_catalog(tmp_path / "cat", 4, 2)
    store = JobStore(pg_url)
    try:
        job_id = store.create(str(manifest), False)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE jobs SET state = 'running', owner = 'replica-gone', attempts = 1, "
                "heartbeat_at = %s WHERE job_id = %s",
                (time.time() - 3600, job_id),
            )
        settings = _settings(tmp_path / "data", pg_url)
        with _runner(settings, HistEmbedder(), "replica-b") as b:
            assert b.store.requeue_unfinished() == []  # a running row is not requeued on PG
            done = _wait(store, job_id)
        assert done["state"] == "succeeded", done["error"]
        assert (done["owner"], done["attempts"]) == ("replica-b", 2)
    finally:
        store.close()


def test_a_job_whose_replica_was_killed_is_taken_over(tmp_path: Path, pg_url: str) -> None:
    manifest = write_catalog(tmp_path / "cat", 10, 2)
    data = tmp_path / "data"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    worker = subprocess.Popen(
        [sys.executable, "-m", "tests.indexer.ops.job_worker", pg_url, str(data), str(manifest)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    store = JobStore(pg_url)
    try:
        assert worker.stdout is not None
        said = worker.stdout.readline()
        if said.strip() != b"held replica-killed":
            worker.kill()
            _out, err = worker.communicate()
            pytest.fail(f"worker did not hold ({said!r}): {err.decode()[-2000:]}")
        job = store.latest()
        assert job is not None and job["state"] == "running" and job["owner"] == "replica-killed"
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        started = time.monotonic()
        with _runner(_settings(data, pg_url), HistEmbedder(), "replica-b"):
            done = _wait(store, str(job["job_id"]))
        assert done["state"] == "succeeded", done["error"]
        assert (done["owner"], done["attempts"]) == ("replica-b", 2)
        counts = done["counts"]
        # Resumed, not redone: the batch the killed replica committed is reused.
        assert counts["indexed"] + counts["unchanged"] == 20 and counts["indexed"] < 20, counts
        # Taken over once the heartbeat went stale (1 s), not after some long timeout.
        assert time.monotonic() - started < 30
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        store.close()
