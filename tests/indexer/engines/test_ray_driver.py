"""The Ray engine's driver without Ray: the same rows, rejects and vectors as the local engine.

``iter_embed_with_ray`` is replaced by the stages it sends to the cluster
(``decode_batch`` then ``EmbedActor``), run here in this process on the rows
it would ship, so the driver's reading, de-duplication, commits and reject
wording run everywhere, Ray installed or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.engines import ray_engine
from shoplens.indexer.engines.base import EmbedResult
from shoplens.indexer.engines.local import embed_missing
from shoplens.indexer.engines.ray_stages import EmbedActor, decode_batch, read_preprocess
from shoplens.models.base import FloatArray
from shoplens.models.onnx_embedder import OnnxEmbedder
from tests.indexer.engines.compare import mixed_refs, run_engine
from tests.indexer.engines.test_ray_engine import model_dir

__all__ = ["model_dir"]  # the module fixture shared with the engine's own tests


def _in_process(
    items: Iterable[ray_engine.Item],
    *,
    model_dir: Path,
    batch_size: int = 32,
    max_pixels: int = 75_000_000,
    photo_max_side: int | None = None,
    **_: Any,
) -> Iterator[ray_engine.RayBatch]:
    """What the cluster computes, a batch at a time, pulling items lazily as Ray does."""
    cfg = read_preprocess(model_dir).to_dict()
    actor = EmbedActor(str(model_dir))
    pending: list[ray_engine.Item] = []
    for item in [*items, None]:
        if item is not None:
            pending.append(item)
        if pending and (item is None or len(pending) == batch_size):
            rows = ray_engine._rows(pending)
            batch = {k: np.asarray([r[k] for r in rows], dtype=object) for k in rows[0]}
            decoded = decode_batch(
                batch, preprocess_cfg=cfg, max_pixels=max_pixels, photo_max_side=photo_max_side
            )
            yield ray_engine._to_result(actor(decoded))
            pending = []


@pytest.mark.parametrize("paths_on_workers", [False, True])
def test_the_driver_matches_the_local_engine(
    model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, paths_on_workers: bool
) -> None:
    monkeypatch.setattr(ray_engine, "iter_embed_with_ray", _in_process)
    refs = mixed_refs(tmp_path / "photos", 31)
    embedder = OnnxEmbedder(model_dir)

    def run(engine: str, data_dir: Path) -> tuple[EmbedResult, dict[str, FloatArray]]:
        if engine == "local":
            return run_engine(embed_missing, embedder, refs, data_dir)
        return run_engine(
            ray_engine.embed_missing_ray,
            embedder,
            refs,
            data_dir,
            paths_on_workers=paths_on_workers,
        )

    local, local_vectors = run("local", tmp_path / "local")
    remote, remote_vectors = run("ray", tmp_path / "ray")
    assert remote.shas == local.shas and len(remote.shas) == 4
    key = lambda r: r.line  # noqa: E731
    assert sorted(remote.rejects, key=key) == sorted(local.rejects, key=key)
    assert remote.indexed + remote.unchanged == 4
    for sha, vector in local_vectors.items():
        np.testing.assert_allclose(remote_vectors[sha], vector, atol=1e-5)
        assert photo_path(tmp_path / "ray", sha).is_file()

    # A rerun knows every good file by its stat; only the bad row is sent again.
    again, _ = run("ray", tmp_path / "ray")
    assert (again.indexed, again.unchanged, again.batches) == (0, 4, 1)
    assert sorted(again.rejects, key=key) == sorted(local.rejects, key=key)
