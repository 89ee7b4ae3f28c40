"""The jobs table learnt a ``kind`` column (learn jobs): older tables are read and migrated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from shoplens.config import Settings
from shoplens.indexer.ops.job_store import JobStore, latest_job

OLD_SCHEMA = """
CREATE TABLE jobs (
    job_id TEXT PRIMARY KEY, state TEXT NOT NULL, manifest TEXT NOT NULL,
    prune INTEGER NOT NULL, created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0, progress TEXT NOT NULL DEFAULT '{}', result TEXT,
    error TEXT, snapshot_id TEXT
);
INSERT INTO jobs (job_id, state, manifest, prune, created_at)
VALUES ('job-old', 'succeeded', '/m.csv', 0, '2026-01-01T00:00:00.000Z');
"""


def test_an_old_jobs_table_is_read_then_migrated(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    tmp_path.mkdir(exist_ok=True)
    with sqlite3.connect(settings.db_path) as db:
        db.executescript(OLD_SCHEMA)
    old = latest_job(settings)  # read-only: no migration, still readable
    assert old is not None and old["kind"] == "reindex" and old["job_id"] == "job-old"
    store = JobStore(settings.db_path)
    try:
        assert store.get("job-old")["kind"] == "reindex"  # type: ignore[index]
        store.finish("job-old", "succeeded", progress={})
        job_id = store.create("", False, kind="learn")
        assert store.get(job_id)["kind"] == "learn"  # type: ignore[index]
    finally:
        store.close()
    latest = latest_job(settings)
    assert latest is not None and latest["kind"] == "learn"
