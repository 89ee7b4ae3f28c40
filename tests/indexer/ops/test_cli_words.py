"""`shoplens search --text WORDS` (with or without a photo) as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from tests.indexer.helpers import write_catalog
from tests.indexer.ops.test_cli import _one_line_error, shoplens


@pytest.fixture
def indexed(tmp_path: Path, embedder: ImageEmbedder) -> Path:
    """Six products ("Product 0".."Product 5", categories even/odd) indexed with the
    real default model, which ``shoplens search IMAGE`` loads."""
    from shoplens.indexer.ops.build import run_index

    data = tmp_path / "data"
    manifest = write_catalog(tmp_path / "cat", 6, 1)
    run_index(Settings(data_dir=data), manifest, embedder=embedder)
    return data


def _ids(out: str) -> list[str]:
    return [r["product_id"] for r in json.loads(out)["results"]]


def test_search_by_words_and_refine_a_photo(indexed: Path, tmp_path: Path) -> None:
    p = shoplens("search", "--text", "odd", "--json", data_dir=indexed)
    assert p.returncode == 0, p.stderr
    assert sorted(_ids(p.stdout)) == ["p1", "p3", "p5"]
    p = shoplens("search", "--text", "prod 4", "--k", "2", "--json", data_dir=indexed)
    assert _ids(p.stdout)[0] == "p4"  # every word (a prefix, then "4") first
    p = shoplens("search", "--text", "even", data_dir=indexed)
    assert p.returncode == 0 and "p0" in p.stdout and "p1" not in p.stdout

    photo = tmp_path / "cat" / "img" / "p3_0.jpg"
    p = shoplens("search", str(photo), "--k", "6", "--json", data_dir=indexed)
    assert _ids(p.stdout)[0] == "p3" and len(_ids(p.stdout)) == 6
    p = shoplens("search", str(photo), "--text", "even", "--k", "6", "--json", data_dir=indexed)
    assert p.returncode == 0, p.stderr
    assert sorted(_ids(p.stdout)) == ["p0", "p2", "p4"]  # only what the words match

    _one_line_error(shoplens("search", data_dir=indexed), "--text")
    _one_line_error(shoplens("search", "--text", "***", data_dir=indexed), "no words")
    _one_line_error(shoplens("search", "--text", "x", data_dir=tmp_path / "none"), "no index")
