"""The `shoplens index/search/status` commands as a user runs them (real processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.indexer.helpers import DEFAULT_MODEL, write_catalog

REPO = Path(__file__).resolve().parents[3]


def shoplens(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHOPLENS_DATA_DIR": str(data_dir)}
    return subprocess.run(
        [sys.executable, "-m", "shoplens.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [lines[-1]] and lines[-1].startswith("shoplens: error: "), p.stderr
    assert needle in lines[-1]
    assert "Traceback" not in p.stderr


def test_user_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _one_line_error(shoplens("index", str(tmp_path / "nope.csv"), data_dir=data), "does not exist")
    bad = tmp_path / "bad.csv"
    bad.write_text("sku,picture\n1,a.jpg\n")
    _one_line_error(shoplens("index", str(bad), data_dir=data), "no product_id")
    _one_line_error(shoplens("status", data_dir=data), "shoplens index")


def test_help_lists_commands(tmp_path: Path) -> None:
    p = shoplens("--help", data_dir=tmp_path)
    assert p.returncode == 0
    for cmd in ("index", "search", "status"):
        assert cmd in p.stdout


@pytest.mark.usefixtures("embedder")  # exported once per machine, then cached
def test_index_search_status_with_the_real_model(tmp_path: Path) -> None:
    data = tmp_path / "data"
    manifest = write_catalog(tmp_path / "cat", 6, 1)
    with open(manifest, "a", encoding="utf-8") as f:
        f.write("p9,img/missing.jpg,Missing,odd,1,EUR,yes\n")
    p = shoplens("index", str(manifest), data_dir=data)
    assert p.returncode == 0, p.stderr
    assert "indexed 6, unchanged 0, rejected 1, removed 0" in p.stdout

    p = shoplens("index", str(manifest), "--prune", data_dir=data)
    assert p.returncode == 0, p.stderr
    assert "indexed 0, unchanged 6, rejected 1, removed 0" in p.stdout

    query = tmp_path / "q.jpg"
    query.write_bytes((tmp_path / "cat" / "img" / "p3_0.jpg").read_bytes())
    p = shoplens("search", str(query), "--k", "3", "--json", data_dir=data)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["model"] == DEFAULT_MODEL and len(out["results"]) == 3
    top = out["results"][0]
    assert top["product_id"] == "p3" and top["score"] > 0.9
    assert set(top) == {
        "product_id",
        "score",
        "title",
        "category",
        "price",
        "currency",
        "in_stock",
        "image_id",
    }
    p = shoplens("search", str(query), data_dir=data)
    assert p.returncode == 0 and "p3" in p.stdout.splitlines()[1]

    p = shoplens("status", data_dir=data)
    assert p.returncode == 0, p.stderr
    assert DEFAULT_MODEL in p.stdout and "6 products" in p.stdout

    p = shoplens("index", str(manifest), "--model", "no-such-model", data_dir=data)
    assert p.returncode == 2 and "no-such-model" in p.stderr

    not_image = tmp_path / "q.txt"
    not_image.write_text("hello")
    _one_line_error(shoplens("search", str(not_image), data_dir=data), "unsupported image")
