"""What the Ray engine's workers run: stage 1 decodes, stage 2 embeds.

Kept apart from the driver (``ray_engine``) so that a worker imports only what
it runs. Stage 1 reads, hashes and decodes with the ingest module's functions,
so a row fails on a worker with the reason the local pipeline gives it; stage
2 embeds with :class:`~shoplens.models.onnx_embedder.OnnxEmbedder`, the class
the local path uses, loaded once per actor.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from shoplens.errors import ModelUnavailable, ShoplensError
from shoplens.indexer.engines import ingest
from shoplens.models.base import PreprocessConfig, preprocess
from shoplens.models.cache import MODEL_FILE, PREPROCESS_FILE
from shoplens.models.onnx_embedder import OnnxEmbedder

log = logging.getLogger(__name__)

Batch = dict[str, Any]  # Ray Data's "numpy" batch format: column name -> array


def read_preprocess(model_dir: Path) -> PreprocessConfig:
    try:
        text = (Path(model_dir) / PREPROCESS_FILE).read_text(encoding="utf-8")
        return PreprocessConfig.from_dict(json.loads(text))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelUnavailable(f"no usable {PREPROCESS_FILE} in {model_dir}: {exc}") from None


def model_files(model_dir: Path) -> dict[str, bytes]:
    """Every file of an exported model folder, to ship to workers through the object store."""
    files = {p.name: p.read_bytes() for p in sorted(Path(model_dir).iterdir()) if p.is_file()}
    if MODEL_FILE not in files:
        raise ModelUnavailable(f"no {MODEL_FILE} in {model_dir}")
    return files


# -- stage 1: read + decode + preprocess (stateless Ray tasks) ------------------


def decode_batch(
    batch: Batch,
    *,
    preprocess_cfg: dict[str, Any],
    max_pixels: int,
    draft: bool = True,
    photo_max_side: int | None = None,
) -> Batch:
    """Rows ``key, data, path`` -> ``key, sha256, error, photo, pixels``.

    ``pixels`` is zeros where ``error`` is set; ``photo`` is the re-encoded
    JPEG the service shows (empty unless ``photo_max_side``).
    """
    cfg = PreprocessConfig.from_dict(preprocess_cfg)
    keys = list(batch["key"])
    n = len(keys)
    pixels = np.zeros((n, 3, cfg.crop, cfg.crop), np.float32)
    shas: list[str] = [""] * n
    errors: list[str] = [""] * n
    photos: list[bytes] = [b""] * n
    for i in range(n):
        path = str(batch["path"][i])
        data = ingest.read_file(Path(path), path) if path else bytes(batch["data"][i])
        if isinstance(data, ingest.Rejected):
            errors[i] = data.reason
            continue
        try:
            shas[i] = ingest.sha256_of(data)
            image = ingest.decode(
                data, max_pixels=max_pixels, draft_size=cfg.resize if draft else None
            )
            if photo_max_side is not None:
                photos[i] = ingest.photo_jpeg(image, photo_max_side)
            pixels[i] = preprocess(image, cfg)
        except ShoplensError as exc:
            errors[i] = exc.message
        except Exception as exc:  # one odd file must not fail a cluster job
            log.warning("unexpected error decoding %s", keys[i], exc_info=True)
            errors[i] = ingest.unprocessable(exc)
    return {
        "key": np.asarray(keys, dtype=object),
        "sha256": np.asarray(shas, dtype=object),
        "error": np.asarray(errors, dtype=object),
        "photo": np.asarray(photos, dtype=object),
        "pixels": pixels,
    }


# -- stage 2: embed (one model per actor) ---------------------------------------


class EmbedActor:
    """Loads the exported model once; embeds the rows stage 1 decoded."""

    def __init__(self, model: dict[str, bytes] | str | Any, threads: int = 1) -> None:
        if not isinstance(model, dict | str):  # an ObjectRef: Ray Data passes it unresolved
            import ray

            model = ray.get(model)
        if isinstance(model, str):
            model_dir = Path(model)  # a path every worker sees (shared storage)
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="shoplens-model-")
            model_dir = Path(self._tmp.name)
            for name, blob in model.items():
                (model_dir / name).write_bytes(blob)
        self.embedder = OnnxEmbedder(model_dir, threads=threads)

    def __call__(self, batch: Batch) -> Batch:
        errors = np.asarray(batch["error"], dtype=object)
        ok = errors == ""
        vectors = np.zeros((len(errors), self.embedder.dim), np.float32)
        if ok.any():
            pixels = np.asarray(batch["pixels"], dtype=np.float32)[ok]
            vectors[ok] = self.embedder.embed_prepared(pixels)
        return {
            "key": batch["key"],
            "sha256": batch["sha256"],
            "error": errors,
            "photo": batch["photo"],
            "vector": vectors,
        }
