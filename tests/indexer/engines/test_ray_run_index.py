"""`run_index` with ``index_engine="ray"``: the same index as the local engine."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from shoplens.config import Settings
from shoplens.models.onnx_embedder import OnnxEmbedder
from tests.indexer.engines.compare import encoded
from tests.indexer.engines.test_ray_engine import local_ray, model_dir

__all__ = ["local_ray", "model_dir"]  # module fixtures shared with the engine's own tests


@pytest.mark.slow
def test_run_index_on_ray_equals_local(local_ray: None, model_dir: Path, tmp_path: Path) -> None:
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.ops.build import run_index

    photos = tmp_path / "photos"
    photos.mkdir()
    lines = ["product_id,image,title"]
    for i in range(7):
        (photos / f"{i}.jpg").write_bytes(encoded("JPEG", 40 + i, (120, 90)))
        lines.append(f"p{i},photos/{i}.jpg,Thing {i}")
    lines.append("p9,photos/missing.jpg,Missing")
    manifest = tmp_path / "catalog.csv"
    manifest.write_text("\n".join(lines) + "\n")
    embedder = OnnxEmbedder(model_dir)

    def index(
        engine: Literal["local", "ray"],
    ) -> tuple[tuple[int, ...], dict[str, np.ndarray], list[int]]:
        settings = Settings(data_dir=tmp_path / engine, index_engine=engine, batch_size=3)
        seen: list[int] = []
        report = run_index(
            settings, manifest, embedder=embedder, on_progress=lambda d, t: seen.append(d)
        )
        with CatalogStore(settings.db_path) as store:
            shas = sorted(store.embedded_shas_all(embedder.name))
            vectors = store.get_embeddings(embedder.name, shas)
        counts = (report.indexed, report.unchanged, report.rejected, report.removed)
        return counts, vectors, seen

    local_counts, local_vectors, _ = index("local")
    ray_counts, ray_vectors, progress = index("ray")
    assert ray_counts == local_counts == (7, 0, 1, 0)
    assert set(ray_vectors) == set(local_vectors)
    for sha, vector in local_vectors.items():
        np.testing.assert_allclose(ray_vectors[sha], vector, atol=1e-5)
    assert progress and progress[-1] == 8  # on_progress reaches every row
