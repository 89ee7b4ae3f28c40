"""`shoplens index` on a manifest of http:// images (a real server on 127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.indexer.ops.test_cli import shoplens
from tests.indexer.sources.image_server import ServerState, server

__all__ = ["server"]  # the fixture, shared with the fetcher's own tests


@pytest.mark.usefixtures("embedder")  # exported once per machine, then cached
@pytest.mark.timeout(300)
def test_index_fetches_http_images(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    data = tmp_path / "data"
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "product_id,image,title\n"
        f"p1,{base}/img/a.jpg,Red\n"
        f"p2,{base}/img/b.png,Green\n"
        f"p3,{base}/missing,Gone\n"
    )
    p = shoplens("index", str(manifest), data_dir=data)
    assert p.returncode == 0, p.stderr
    assert "indexed 2, unchanged 0, rejected 1, removed 0" in p.stdout
    assert "rejected rows are listed in" in p.stderr
    assert state.bodies["/img/a.jpg"] == 1 and state.bodies["/img/b.png"] == 1
    rejects = next((data / "runs").glob("*.rejects.csv")).read_text()
    assert f"cannot fetch {base}/missing: HTTP 404" in rejects
    assert (data / "cache" / "fetch").is_dir()  # settings.fetch_cache_dir

    # A rerun revalidates (304) and embeds nothing.
    p = shoplens("index", str(manifest), data_dir=data)
    assert p.returncode == 0, p.stderr
    assert "indexed 0, unchanged 2, rejected 1, removed 0" in p.stdout
    assert state.bodies["/img/a.jpg"] == 1 and state.not_modified["/img/a.jpg"] == 1
    assert "faiss" not in p.stderr.lower()  # library chatter stays quiet
