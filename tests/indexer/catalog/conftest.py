"""The catalog's tests run on both engines where they touch only the store."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def target(db_target: str | None, tmp_path: Path) -> Path | str:
    """What a ``CatalogStore`` opens: a SQLite file, or a fresh PostgreSQL database."""
    return db_target if db_target is not None else tmp_path / "catalog.db"
