"""Fixtures of the hardening tests: a small catalog indexed once by the real indexer
with the real default model, real apps (lifespan run), and the admin header."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from shoplens.config import Settings
from tests.service.helpers import ADMIN_TOKEN, write_catalog

if TYPE_CHECKING:
    from shoplens.models.base import ImageEmbedder

AppFactory = Callable[..., AbstractContextManager[TestClient]]
N_SYNTHETIC = 19  # + 81 demo products = 100


@pytest.fixture(scope="session")
def hardening_built(tmp_path_factory: pytest.TempPathFactory, embedder: ImageEmbedder) -> Path:
    """A 100-product data dir indexed once per session; tests copy it."""
    from shoplens.indexer.build import run_index

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


@pytest.fixture
def make_client(embedder: ImageEmbedder) -> AppFactory:
    """``with make_client(data_dir, **settings) as client``: a real app, lifespan run."""
    from shoplens.service.app import create_app

    @contextmanager
    def factory(data_dir: Path, **overrides: Any) -> Iterator[TestClient]:
        values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "reload_interval_s": 0.2}
        values.update(overrides)
        app = create_app(Settings(data_dir=data_dir, **values), embedder=embedder)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield client

    return factory


@pytest.fixture
def client(make_client: AppFactory, data_dir: Path) -> Iterator[TestClient]:
    with make_client(data_dir) as c:
        yield c


@pytest.fixture
def admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}
