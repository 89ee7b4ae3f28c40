"""``migrations.upgrade`` of the jobs, feedback, AR and replica stores (what ``shoplens db
upgrade`` runs): every migration applied once, on both engines, then nothing."""

from __future__ import annotations

from pathlib import Path

from shoplens.ar_assets import store as ar_store
from shoplens.db import Database
from shoplens.db.migrations import status, upgrade
from shoplens.indexer.feedback import store as feedback_store
from shoplens.indexer.ops import job_store, replicas


def test_each_store_migrates_once(tmp_path: Path, db_target: str | None) -> None:
    modules = (job_store, feedback_store, ar_store, replicas)
    for module in modules:
        target = db_target or tmp_path / f"{module.COMPONENT}.db"
        done = upgrade(target, module.COMPONENT, module.MIGRATIONS)
        assert len(done) == len(module.MIGRATIONS)
        assert done[0].startswith(f"{module.COMPONENT}:1 ")
        assert upgrade(target, module.COMPONENT, module.MIGRATIONS) == []
        db = Database(target, name="check")
        try:
            assert status(db)[module.COMPONENT] == len(module.MIGRATIONS)
        finally:
            db.close()
