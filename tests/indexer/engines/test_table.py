"""The engine table: every ``index_engine`` value has an engine, Ray stays optional."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import get_args

import pytest

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.engines.local import embed_missing
from shoplens.indexer.engines.table import ENGINES, embed_missing_on_ray, engine_for
from shoplens.indexer.sources.manifest import ImageRef
from shoplens.models.onnx_embedder import OnnxEmbedder
from tests.indexer.engines.test_ray_engine import model_dir
from tests.indexer.helpers import HistEmbedder

__all__ = ["model_dir"]  # the module fixture shared with the engine's own tests


def test_every_setting_names_an_engine() -> None:
    names = get_args(Settings.model_fields["index_engine"].annotation)
    assert set(ENGINES) == set(names)
    assert engine_for(Settings(index_engine="local")) is embed_missing
    assert engine_for(Settings(index_engine="ray")) is embed_missing_on_ray


def test_the_ray_engine_says_what_it_needs(
    tmp_path: Path, hist: HistEmbedder, model_dir: Path
) -> None:
    settings = Settings(data_dir=tmp_path, index_engine="ray")
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"not read: the engine stops first")
    refs = [ImageRef(line=2, product_id="p1", source="a.jpg", path=photo)]
    engine = engine_for(settings)
    with CatalogStore(settings.db_path) as store:
        with pytest.raises(ModelUnavailable, match="needs an exported ONNX model"):
            engine(settings, store, hist, refs)
        if importlib.util.find_spec("ray") is None:
            with pytest.raises(ModelUnavailable, match=r"pip install 'shoplens\[ray\]'"):
                engine(settings, store, OnnxEmbedder(model_dir), refs)
