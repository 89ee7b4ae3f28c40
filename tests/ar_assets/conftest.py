"""Fixtures of the AR tests: a small app with only the AR routes, and generated models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import SecretStr

from shoplens.ar_assets import tools
from shoplens.ar_assets.service import ArService
from shoplens.config import Settings

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def make_app(settings: Settings) -> FastAPI:
    from shoplens.service import deps, handlers

    app = FastAPI()
    app.state.settings = settings
    app.state.ar = ArService.open(settings)
    handlers.install(app)
    app.include_router(deps.ar_router())
    # No service state in this app: the catalog is what a test puts on app.state.live.
    app.dependency_overrides[deps.get_catalog] = _catalog
    return app


class EveryProduct:
    """The catalog of the AR-only app: every product id exists, with no title.

    These tests are about 3D models, not ids; refusing unknown products is tested
    against the real app and its real catalog (test_orphans.py).
    """

    def product(self, product_id: str) -> tuple[Any, list[Any]]:
        return SimpleNamespace(title=None, url=None), []


async def _catalog(request: Request) -> Any:
    return getattr(request.app.state, "live", None) or EveryProduct()


@pytest.fixture
def ar_settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", admin_token=SecretStr(TOKEN))


@pytest.fixture
def client(ar_settings: Settings) -> Iterator[TestClient]:
    with TestClient(make_app(ar_settings)) as c:
        yield c


@pytest.fixture(scope="session")
def node_tools() -> tools.NodeTools:
    t = tools.find_tools()
    if t.validator is None or t.gltf_transform is None:
        pytest.skip("node + node_modules (gltf-validator, @gltf-transform/cli) are not installed")
    return t


def upload(
    c: TestClient,
    product_id: str,
    data: bytes,
    filename: str = "model.glb",
    **form: str,
) -> Any:
    return c.put(
        f"/v1/products/{product_id}/ar",
        files={"file": (filename, data, "application/octet-stream")},
        data=form,
        headers=AUTH,
    )
