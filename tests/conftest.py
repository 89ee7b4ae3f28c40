"""Fixtures every part's tests share.

Tests never need ``../shared``: those that use it ask for ``grocery_dir`` or
``ar_data_dir`` and are skipped cleanly when it is absent.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shoplens.config import Settings

if TYPE_CHECKING:
    from shoplens.models.base import ImageEmbedder

# The PostgreSQL server fixtures (pg_server, pg_url, db_target) for every folder.
pytest_plugins = ["tests.pg"]

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def grocery_dir() -> Path:
    d = SHARED / "data" / "grocery"
    if not (d / "catalog.csv").exists():
        pytest.skip("../shared/data/grocery is not available")
    return d


@pytest.fixture(scope="session")
def ar_data_dir() -> Path:
    d = SHARED / "data" / "ar"
    if not d.is_dir():
        pytest.skip("../shared/data/ar is not available")
    return d


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    """Settings with a private data dir; the model cache stays shared (export once)."""
    yield Settings(data_dir=tmp_path / "data")


@pytest.fixture(scope="session")
def real_embedder() -> ImageEmbedder:
    """The real default model on ONNX Runtime (exported once per machine, then cached)."""
    from shoplens.models.registry import load_embedder

    return load_embedder(Settings())


@pytest.fixture(scope="session")
def embedder(real_embedder: ImageEmbedder) -> ImageEmbedder:
    """The model a test embeds with: the real default one here; a folder may override
    this (tests/service serves a fast stand-in unless a test is marked ``real_model``)."""
    return real_embedder
