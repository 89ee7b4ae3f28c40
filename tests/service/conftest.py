"""Fixtures for the service tests: a real catalog indexed by the real indexer, and
real apps (lifespan run) talked to over HTTP.

The apps serve a fast stand-in model unless a test is marked ``real_model``:
routes, filters, errors and jobs behave the same whatever the vectors are, and
only tests whose results depend on what the default model sees (a shopper's
photo finding its product, the demo samples, the model's name in answers)
pay for the real one.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from starlette.testclient import TestClient

from shoplens.config import Settings
from tests.service.helpers import ADMIN_TOKEN, write_catalog, write_stand_in_model

if TYPE_CHECKING:
    from shoplens.models.base import ImageEmbedder


@pytest.fixture(scope="session")
def stand_in(tmp_path_factory: pytest.TempPathFactory) -> ImageEmbedder:
    """The fast stand-in model: a colour thumbnail network on ONNX Runtime."""
    from shoplens.models.onnx_embedder import OnnxEmbedder

    return OnnxEmbedder(write_stand_in_model(tmp_path_factory.mktemp("stand-in")))


@pytest.fixture
def embedder(request: pytest.FixtureRequest, stand_in: ImageEmbedder) -> ImageEmbedder:
    """The model this test's apps serve and index with: the stand-in, or the real
    default model (loaded once per session) when the test is marked ``real_model``."""
    if request.node.get_closest_marker("real_model") is None:
        return stand_in
    real: ImageEmbedder = request.getfixturevalue("real_embedder")
    return real


@pytest.fixture(scope="session")
def catalog_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="session")
def indexed_catalogs(
    tmp_path_factory: pytest.TempPathFactory, catalog_manifest: Path
) -> Callable[[ImageEmbedder], Path]:
    """``indexed(model)``: the catalog indexed by the real indexer, once per model and session."""
    from shoplens.indexer.ops.build import run_index

    built: dict[str, Path] = {}

    def indexed(model: ImageEmbedder) -> Path:
        if model.name not in built:
            data_dir = tmp_path_factory.mktemp("indexed") / "data"
            report = run_index(Settings(data_dir=data_dir), catalog_manifest, embedder=model)
            assert report.rejected == 0, report.rejects_sample
            built[model.name] = data_dir
        return built[model.name]

    return indexed


@pytest.fixture
def built_data_dir(
    indexed_catalogs: Callable[[ImageEmbedder], Path], embedder: ImageEmbedder
) -> Path:
    """The data dir indexed once per session with this test's model; tests copy it."""
    return indexed_catalogs(embedder)


@pytest.fixture
def data_dir(tmp_path: Path, built_data_dir: Path) -> Path:
    """A private copy of the indexed data dir (tests may edit the catalog)."""
    target = tmp_path / "data"
    shutil.copytree(built_data_dir, target)
    return target


@pytest.fixture
def pg_data_dir(
    tmp_path: Path, catalog_manifest: Path, embedder: ImageEmbedder, pg_url: str
) -> Path:
    """The catalog indexed by the real indexer into a fresh PostgreSQL database
    (``pg_url``; photos and snapshots in this data dir): what replicas share. On
    PostgreSQL the published snapshot is a row, so a data dir indexed on SQLite
    serves nothing there."""
    from shoplens.indexer.ops.build import run_index

    data_dir = tmp_path / "pg-data"
    report = run_index(
        Settings(data_dir=data_dir, database_url=pg_url), catalog_manifest, embedder=embedder
    )
    assert report.rejected == 0, report.rejects_sample
    return data_dir


AppFactory = Callable[..., AbstractContextManager[TestClient]]


@pytest.fixture
def make_client(embedder: ImageEmbedder) -> AppFactory:
    """``with make_client(data_dir, **settings) as client``: a real app, lifespan run.

    ``model=`` serves another embedder than the test's (e.g. one that holds a job)."""
    from shoplens.service.app import create_app

    @contextmanager
    def factory(
        data_dir: Path, *, model: ImageEmbedder | None = None, **overrides: Any
    ) -> Iterator[TestClient]:
        values: dict[str, Any] = {"admin_token": ADMIN_TOKEN, "reload_interval_s": 0.2}
        values.update(overrides)
        settings = Settings(data_dir=data_dir, **values)
        app = create_app(settings, embedder=model or embedder)
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


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo catalog indexed exactly as `shoplens demo` does it (real model)."""
    data_dir = tmp_path_factory.mktemp("demo") / "data"
    from shoplens.service.commands import ensure_demo_index

    assert ensure_demo_index(Settings(data_dir=data_dir)) is True
    return data_dir
