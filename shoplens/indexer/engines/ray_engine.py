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
import itertools
import json
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoplens.errors import ModelUnavailable, ShoplensError
from shoplens.models.base import FloatArray, ImageEmbedder, PreprocessConfig, preprocess

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.engines.local import EmbedResult, Fetch
    from shoplens.indexer.sources.manifest import ImageRef

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
    # Re-encoded catalog photo per key (only with ``photo_max_side``).
    photos: list[bytes] = field(default_factory=list)


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
    from shoplens.models.decode import decode_image, encode_jpeg

    cfg = PreprocessConfig.from_dict(preprocess_cfg)
    keys = list(batch["key"])
    n = len(keys)
    pixels = np.zeros((n, 3, cfg.crop, cfg.crop), np.float32)
    shas: list[str] = [""] * n
    errors: list[str] = [""] * n
    photos: list[bytes] = [b""] * n
    for i in range(n):
        try:
            data = _read(batch["data"][i], batch["path"][i])
            shas[i] = hashlib.sha256(data).hexdigest()
            image = decode_image(
                data, max_pixels=max_pixels, draft_size=cfg.resize if draft else None
            )
            if photo_max_side is not None:
                photos[i] = encode_jpeg(image, max_side=photo_max_side)
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
        "photo": np.asarray(photos, dtype=object),
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
            "photo": batch["photo"],
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
        photos=[bytes(p) for p, good in zip(batch["photo"], ok, strict=True) if good],
    )


def _chunks(items: Iterable[Item], max_items: int, max_bytes: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    size = 0
    for item in items:
        chunk.append(item)
        size += len(item[1]) if isinstance(item[1], bytes) else 0
        if len(chunk) >= max_items or size >= max_bytes:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


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
    photo_max_side: int | None = None,
    chunk_items: int = 50_000,
    chunk_bytes: int = 512 * 1024 * 1024,
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

    ``photo_max_side``: also return each image re-encoded as a JPEG of at
    most this side (the catalog photo the service shows), from the same decode.

    Items go to the cluster in chunks of at most ``chunk_items`` items and
    ``chunk_bytes`` of shipped bytes (one Ray dataset each, the actors started
    again for each), which bounds what the driver and the object store hold.
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
    chunks = _chunks(items, chunk_items, chunk_bytes)
    first = next(chunks, None)
    if first is None:
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
    elif ray_address is not None:
        log.warning(
            "Ray is already initialised in this process; ignoring ray_address=%s", ray_address
        )
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        model_arg: Any = str(model_dir.resolve())
        if ship_model:
            model_arg = ray.put(model_files(model_dir))
        for chunk in itertools.chain([first], chunks):
            ds: Any = ray.data.from_items(_rows(chunk))
            ds = ds.map_batches(
                decode_batch,
                batch_size=batch_size,
                batch_format="numpy",
                fn_kwargs={
                    "preprocess_cfg": cfg.to_dict(),
                    "max_pixels": max_pixels,
                    "draft": draft,
                    "photo_max_side": photo_max_side,
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


# -- drop-in for the indexer's embed_missing -------------------------------------


def embed_missing_ray(
    settings: Settings,
    store: CatalogStore,
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    *,
    fetch: Fetch | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], object] | None = None,
    ray_address: str | None = None,
    actors: int = 1,
    threads_per_actor: int = 1,
    paths_on_workers: bool = False,
    runtime_env: dict[str, Any] | None = None,
) -> EmbedResult:
    """:func:`shoplens.indexer.engines.local.embed_missing` with decode + embed on Ray.

    Same contract: only content not yet embedded for this model is sent;
    unchanged files are recognised by size + mtime without reading them; each
    result batch is committed in one transaction with its source rows, so a
    killed run resumes; bad rows become rejects with their line numbers.

    The driver reads and hashes the sources (and fetches URLs through
    ``fetch``, prefetching when it has a ``prefetch`` method) and ships the
    bytes. ``paths_on_workers=True`` ships local paths instead -- only when
    every worker sees the manifest's files at the same paths.
    ``on_progress(done, total)`` is called after each committed result batch.
    """
    from shoplens.files.atomic import write_atomic
    from shoplens.indexer.catalog.photos import PHOTO_MAX_SIDE, photo_path
    from shoplens.indexer.engines.local import REMOTE_UNSUPPORTED, EmbedResult
    from shoplens.indexer.sources.manifest import Reject

    model_dir = getattr(embedder, "model_dir", None)
    if model_dir is None:
        raise ModelUnavailable(
            f"the Ray engine needs an exported ONNX model; {embedder.name} has no model_dir"
        )
    t0 = time.perf_counter()
    model = embedder.name
    data_dir = settings.data_dir
    limit = settings.max_image_bytes
    embedded = store.embedded_shas_all(model)
    result = EmbedResult()
    # Work key (sha256, or path with paths_on_workers) -> positions of refs waiting on it.
    waiting: dict[str, list[int]] = {}
    # Work key -> the idx_sources row to commit with its embedding: (path, size, mtime_ns).
    stats: dict[str, tuple[str, int, int]] = {}
    unchanged_sources: list[tuple[str, int, int, str]] = []

    def done(sha: str) -> bool:
        return sha in embedded and photo_path(data_dir, sha).is_file()

    def reject(pos: int, reason: str) -> None:
        ref = refs[pos]
        result.rejects.append(Reject(ref.line, ref.product_id, reason))

    def unchanged(pos: int, sha: str) -> None:
        result.unchanged += 1
        result.shas[pos] = sha

    def work() -> Iterator[Item]:
        """Lazily, so only one chunk of bytes is in memory at a time."""
        for pos, ref in enumerate(refs):
            if ref.url is not None:
                if fetch is None:
                    reject(pos, REMOTE_UNSUPPORTED)
                    continue
                try:
                    data = fetch(ref.url)
                except (ShoplensError, OSError) as exc:
                    reject(pos, f"cannot fetch {ref.url}: {getattr(exc, 'message', exc)}")
                    continue
                if len(data) > limit:
                    reject(pos, f"image is {len(data)} bytes, more than the limit of {limit}")
                    continue
                sha = hashlib.sha256(data).hexdigest()
                if done(sha):
                    unchanged(pos, sha)
                elif sha in waiting:
                    waiting[sha].append(pos)
                else:
                    waiting[sha] = [pos]
                    yield sha, data
                continue
            path = ref.path
            if path is None:
                reject(pos, f"image {ref.source} is neither a file nor a URL")
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                reject(pos, f"image file not found: {ref.source}")
                continue
            except OSError as exc:
                reject(pos, f"cannot read image {ref.source}: {exc.strerror}")
                continue
            if not stat.S_ISREG(st.st_mode):
                reject(pos, f"image {ref.source} is not a file")
                continue
            if st.st_size > limit:
                reject(pos, f"image is {st.st_size} bytes, more than the limit of {limit}")
                continue
            key = str(path)
            cached = store.cached_sha(key, st.st_size, st.st_mtime_ns)
            if cached is not None and done(cached):
                unchanged(pos, cached)
                continue
            if paths_on_workers:
                if key in waiting:
                    waiting[key].append(pos)
                else:
                    waiting[key] = [pos]
                    stats[key] = (key, st.st_size, st.st_mtime_ns)
                    yield key, Path(path)
                continue
            try:
                data = Path(path).read_bytes()
            except OSError as exc:
                reject(pos, f"cannot read image {ref.source}: {exc.strerror}")
                continue
            sha = hashlib.sha256(data).hexdigest()
            if done(sha):
                unchanged(pos, sha)
                unchanged_sources.append((key, st.st_size, st.st_mtime_ns, sha))
            elif sha in waiting:
                waiting[sha].append(pos)
                stats.setdefault(sha, (key, st.st_size, st.st_mtime_ns))
            else:
                waiting[sha] = [pos]
                stats[sha] = (key, st.st_size, st.st_mtime_ns)
                yield sha, data

    prefetch = getattr(fetch, "prefetch", None)
    if callable(prefetch):
        prefetch([ref.url for ref in refs if ref.url is not None])

    batches = iter_embed_with_ray(
        work(),
        model_dir=Path(model_dir),
        ray_address=ray_address,
        batch_size=max(1, settings.batch_size),
        actors=actors,
        threads_per_actor=threads_per_actor,
        max_pixels=settings.max_image_pixels,
        photo_max_side=PHOTO_MAX_SIDE,
        runtime_env=runtime_env,
        progress=progress,
    )
    for batch in batches:
        items: list[tuple[str, FloatArray]] = []
        sources: list[tuple[str, int, int, str]] = []
        for i, key in enumerate(batch.keys):
            sha = batch.sha256[i]
            target = photo_path(data_dir, sha)
            if not target.is_file():
                write_atomic(target, batch.photos[i], fsync=False)
            items.append((sha, batch.vectors[i]))
            if key in stats:
                sources.append((*stats.pop(key), sha))
            # Popped: a later row with this content finds it done (or retries a failure).
            for pos in waiting.pop(key):
                result.shas[pos] = sha
                if sha in embedded:
                    result.unchanged += 1  # known content whose photo was missing
                else:
                    result.indexed += 1
        store.put_embeddings(model, items, sources)
        embedded.update(sha for sha, _ in items)
        for key, reason in batch.errors.items():
            stats.pop(key, None)
            for pos in waiting.pop(key):
                prefix = "" if reason.startswith("cannot read") else f"image {refs[pos].source}: "
                reject(pos, prefix + reason)
        result.batches += 1
        if on_progress is not None:  # per result batch (rows settled so far, of all rows)
            on_progress(result.indexed + result.unchanged + len(result.rejects), len(refs))
    if unchanged_sources:
        store.put_sources(unchanged_sources)
    if on_progress is not None:
        on_progress(len(refs), len(refs))
    result.seconds = time.perf_counter() - t0
    return result
