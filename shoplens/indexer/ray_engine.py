"""Decode and embed a big catalog as a Ray Data pipeline on a Ray cluster.

The stages are the local pipeline's, moved onto the cluster:

1. ``map_batches`` tasks: read (bytes shipped in, or a path on shared storage),
   sha256, :func:`~shoplens.models.decode.decode_image` with the same limits
   and JPEG draft size as the local pipeline, then
   :func:`~shoplens.models.base.preprocess` with the model's
   :class:`~shoplens.models.base.PreprocessConfig`.
2. ``map_batches`` on a pool of actors, each loading the exported ONNX model
   once into an :class:`~shoplens.models.onnx_embedder.OnnxEmbedder` -- the
   class the local path uses -- and embedding the decoded rows.
3. Results stream back to the driver in batches (``iter_batches``), so the
   driver holds one result batch at a time, never the catalog's vectors.

An item that cannot be read or decoded comes back as an error with its reason
(the reject message), never as a failed job. Index build and publish stay on
the driver. Ray is an optional extra: it is imported only when called.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from shoplens.errors import ModelUnavailable, ShoplensError
from shoplens.models.base import FloatArray, PreprocessConfig, preprocess

log = logging.getLogger(__name__)

Item = tuple[str, bytes | Path]
Batch = dict[str, Any]  # Ray Data's "numpy" batch format: column name -> array

MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"


@dataclass
class RayBatch:
    """One streamed result batch: vectors of the rows that worked, reasons of the rest."""

    keys: list[str] = field(default_factory=list)
    vectors: FloatArray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    sha256: list[str] = field(default_factory=list)  # of each key's source bytes
    errors: dict[str, str] = field(default_factory=dict)  # key -> reason


@dataclass
class RayEmbedResult:
    vectors: dict[str, FloatArray] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


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


def _read(data: Any, path: Any) -> bytes:
    if path:
        try:
            return Path(str(path)).read_bytes()
        except OSError as exc:
            raise _ItemError(f"cannot read image {path}: {exc.strerror or exc}") from None
    return bytes(data)


class _ItemError(Exception):
    pass


def decode_batch(
    batch: Batch, *, preprocess_cfg: dict[str, Any], max_pixels: int, draft: bool = True
) -> Batch:
    """Rows ``key, data, path`` -> ``key, sha256, error, pixels`` (zeros where ``error``)."""
    from shoplens.models.decode import decode_image

    cfg = PreprocessConfig.from_dict(preprocess_cfg)
    keys = list(batch["key"])
    n = len(keys)
    pixels = np.zeros((n, 3, cfg.crop, cfg.crop), np.float32)
    shas: list[str] = [""] * n
    errors: list[str] = [""] * n
    for i in range(n):
        try:
            data = _read(batch["data"][i], batch["path"][i])
            shas[i] = hashlib.sha256(data).hexdigest()
            image = decode_image(
                data, max_pixels=max_pixels, draft_size=cfg.resize if draft else None
            )
            pixels[i] = preprocess(image, cfg)
        except _ItemError as exc:
            errors[i] = str(exc)
        except ShoplensError as exc:
            errors[i] = exc.message
        except Exception as exc:  # one odd file must not fail a cluster job
            log.warning("unexpected error decoding %s", keys[i], exc_info=True)
            errors[i] = f"cannot decode image: {exc!r}"
    return {
        "key": np.asarray(keys, dtype=object),
        "sha256": np.asarray(shas, dtype=object),
        "error": np.asarray(errors, dtype=object),
        "pixels": pixels,
    }


# -- stage 2: embed (one model per actor) ---------------------------------------


class EmbedActor:
    """Loads the exported model once; embeds the rows stage 1 decoded."""

    def __init__(self, model: dict[str, bytes] | str | Any, threads: int = 1) -> None:
        from shoplens.models.onnx_embedder import OnnxEmbedder

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
            "vector": vectors,
        }


# -- driver ---------------------------------------------------------------------


def _rows(items: Iterable[Item]) -> list[dict[str, Any]]:
    rows = []
    for key, source in items:
        if isinstance(source, bytes | bytearray | memoryview):
            rows.append({"key": key, "data": bytes(source), "path": ""})
        else:
            rows.append({"key": key, "data": b"", "path": str(source)})
    return rows


def _to_result(batch: Batch) -> RayBatch:
    keys = [str(k) for k in batch["key"]]
    errors = [str(e) for e in batch["error"]]
    ok = np.asarray([e == "" for e in errors], dtype=bool)
    vectors = np.asarray(batch["vector"], dtype=np.float32)
    return RayBatch(
        keys=[k for k, good in zip(keys, ok, strict=True) if good],
        vectors=np.ascontiguousarray(vectors[ok]),
        sha256=[str(s) for s, good in zip(batch["sha256"], ok, strict=True) if good],
        errors={k: e for k, e, good in zip(keys, errors, ok, strict=True) if not good},
    )


def iter_embed_with_ray(
    items: Iterable[Item],
    *,
    model_dir: Path,
    ray_address: str | None = None,
    batch_size: int = 32,
    actors: int = 1,
    threads_per_actor: int = 1,
    max_pixels: int = 75_000_000,
    draft: bool = True,
    ship_model: bool = True,
    chunk_items: int = 50_000,
    runtime_env: dict[str, Any] | None = None,
    progress: bool = False,
) -> Iterator[RayBatch]:
    """Decode + embed ``(key, bytes | Path)`` items on Ray; yields result batches.

    ``ray_address``: ``None`` uses the Ray already initialised in this process,
    else starts a private local one; ``"auto"`` joins the local node started by
    ``ray start``; ``"ray://host:10001"`` a remote cluster (Ray Client). Ray is
    shut down at the end only when this call started it.

    ``actors`` embedding actors each reserve ``threads_per_actor`` CPUs and run
    ONNX Runtime with that many threads. With ``ship_model`` the model folder
    travels through the object store (workers need no copy); otherwise every
    worker must see ``model_dir`` at the same path. Paths among ``items`` are
    read on the workers (shared storage); bytes are shipped from here.

    Items go to the cluster ``chunk_items`` at a time (one Ray dataset each),
    which bounds what the driver and the object store hold for bytes items.
    """
    try:
        import ray
        import ray.data
    except ImportError:
        raise ModelUnavailable(
            "the Ray engine needs Ray: pip install 'shoplens[ray]' (on the driver and workers)"
        ) from None

    model_dir = Path(model_dir)
    cfg = read_preprocess(model_dir)
    todo = iter(items)
    first = list(islice(todo, chunk_items))
    if not first:
        return
    started_here = False
    if not ray.is_initialized():
        ray.init(
            address="local" if ray_address is None else ray_address,
            runtime_env=runtime_env,
            include_dashboard=False,
            log_to_driver=True,
        )
        started_here = True
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        model_arg: Any = str(model_dir.resolve())
        if ship_model:
            model_arg = ray.put(model_files(model_dir))
        chunk = first
        while chunk:
            ds: Any = ray.data.from_items(_rows(chunk))
            ds = ds.map_batches(
                decode_batch,
                batch_size=batch_size,
                batch_format="numpy",
                fn_kwargs={
                    "preprocess_cfg": cfg.to_dict(),
                    "max_pixels": max_pixels,
                    "draft": draft,
                },
            )
            ds = ds.map_batches(
                EmbedActor,
                batch_size=batch_size,
                batch_format="numpy",
                fn_constructor_args=(model_arg, threads_per_actor),
                concurrency=actors,
                num_cpus=threads_per_actor,
            )
            for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
                yield _to_result(out)
            chunk = list(islice(todo, chunk_items))
    finally:
        if started_here:
            ray.shutdown()


def embed_with_ray(items: Iterable[Item], **kwargs: Any) -> RayEmbedResult:
    """:func:`iter_embed_with_ray` collected into dicts (fine up to a few 100k items)."""
    result = RayEmbedResult()
    for batch in iter_embed_with_ray(items, **kwargs):
        for i, key in enumerate(batch.keys):
            result.vectors[key] = batch.vectors[i]
            result.sha256[key] = batch.sha256[i]
        result.errors.update(batch.errors)
    return result
