"""Fixtures of the hardening tests: a small catalog indexed once by the real indexer
with the real default model, real apps (lifespan run), and the admin header."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from shoplens.config import Settings

# The same real-app fixtures as the service tests, over this folder's data_dir.
from tests.service.conftest import AppFactory, admin, client, make_client
from tests.service.helpers import write_catalog

if TYPE_CHECKING:
    from shoplens.models.base import ImageEmbedder

N_SYNTHETIC = 19  # + 81 demo products = 100


@pytest.fixture(scope="session")
def hardening_built(tmp_path_factory: pytest.TempPathFactory, embedder: ImageEmbedder) -> Path:
    """A 100-product data dir indexed once per session; tests copy it."""
    from shoplens.indexer.ops.build import run_index

    manifest = write_catalog(tmp_path_factory.mktemp("hcatalog"), n_synthetic=N_SYNTHETIC)
    data_dir = tmp_path_factory.mktemp("hindexed") / "data"
    report = run_index(Settings(data_dir=data_dir), manifest, embedder=embedder)
    assert report.rejected == 0, report.rejects_sample
    return data_dir


@pytest.fixture
def data_dir(tmp_path: Path, hardening_built: Path) -> Path:
    target = tmp_path / "data"
    shutil.copytree(hardening_built, target)
    return target


__all__ = ["AppFactory", "admin", "client", "data_dir", "hardening_built", "make_client"]
