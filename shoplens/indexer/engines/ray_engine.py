"""The Ray engine: decode and embed a big catalog as a Ray Data pipeline on a cluster.

This module is the driver; what the workers run is in ``ray_stages``. The
stages are the local pipeline's, moved onto the cluster:

1. ``map_batches`` tasks (:func:`~shoplens.indexer.engines.ray_stages.decode_batch`):
   read (bytes shipped in, or a path on shared storage), sha256 and decode
   with the ingest module's functions, the same limits and JPEG draft size as
   the local pipeline, then preprocess with the model's
   :class:`~shoplens.models.base.PreprocessConfig`.
2. ``map_batches`` on a pool of actors
   (:class:`~shoplens.indexer.engines.ray_stages.EmbedActor`), each loading the
   exported ONNX model once into the class the local path uses.
3. Results stream back to the driver in batches (``iter_batches``), so the
   driver holds one result batch at a time, never the catalog's vectors.

An item that cannot be read or decoded comes back as an error with its reason
(the reject message), never as a failed job. For a manifest
(:func:`embed_missing_ray`), the driver reads references with the ingest
module's :class:`~shoplens.indexer.engines.ingest.Ingest`, as the local engine
does, and commits what comes back. Index build and publish stay on the
driver. Ray is an optional extra: it is imported only when called.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoplens.errors import ModelUnavailable
from shoplens.indexer.catalog.photos import PHOTO_MAX_SIDE
from shoplens.indexer.engines import ingest
from shoplens.indexer.engines.base import EmbedResult
from shoplens.indexer.engines.ray_stages import (
    Batch,
    EmbedActor,
    decode_batch,
    model_files,
    read_preprocess,
)
from shoplens.indexer.sources.manifest import Reject
from shoplens.models.base import FloatArray, ImageEmbedder

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.engines.base import Fetch, OnProgress
    from shoplens.indexer.sources.manifest import ImageRef

log = logging.getLogger(__name__)

Item = tuple[str, bytes | Path]


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


# -- the indexer's engine ------------------------------------------------------


def embed_missing_ray(
    settings: Settings,
    store: CatalogStore,
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    *,
    fetch: Fetch | None = None,
    progress: bool = False,
    on_progress: OnProgress | None = None,
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
    model_dir = getattr(embedder, "model_dir", None)
    if model_dir is None:
        raise ModelUnavailable(
            f"the Ray engine needs an exported ONNX model; {embedder.name} has no model_dir"
        )
    t0 = time.perf_counter()
    model = embedder.name
    embedded = store.embedded_shas_all(model)
    reader = ingest.Ingest(settings, store, embedder, embedded, fetch)
    result = EmbedResult()
    # Work key (sha256, or path with paths_on_workers) -> positions of refs waiting on it.
    waiting: dict[str, list[int]] = {}
    # Work key -> the idx_sources row to commit with its embedding: (path, size, mtime_ns).
    stats: dict[str, tuple[str, int, int]] = {}
    unchanged_sources: list[ingest.SourceRow] = []

    def reject(pos: int, reason: str) -> None:
        ref = refs[pos]
        result.rejects.append(Reject(ref.line, ref.product_id, reason))

    def work() -> Iterator[Item]:
        """Lazily, so only one chunk of bytes is in memory at a time."""
        for pos, ref in enumerate(refs):
            got = reader.locate(ref) if paths_on_workers else reader.read(ref)
            if isinstance(got, ingest.Rejected):
                reject(pos, got.reason)
                continue
            if isinstance(got, ingest.Unchanged):
                result.unchanged += 1
                result.shas[pos] = got.sha256
                if got.source_row is not None:
                    unchanged_sources.append(got.source_row)
                continue
            key = got.key if isinstance(got, ingest.LocalFile) else got.sha256
            if isinstance(got, ingest.Read) and got.source_row is not None:
                stats.setdefault(key, got.source_row[:3])
            if key in waiting:  # the same content (or file) is on its way already
                waiting[key].append(pos)
                continue
            waiting[key] = [pos]
            if isinstance(got, ingest.LocalFile):
                stats[key] = (key, got.size, got.mtime_ns)
                yield key, got.path
            else:
                yield key, got.data

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
        sources: list[ingest.SourceRow] = []
        for i, key in enumerate(batch.keys):
            sha = batch.sha256[i]
            ingest.store_photo(settings.data_dir, sha, batch.photos[i], fsync=False)
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
                reject(pos, ingest.worker_reason(refs[pos].source, reason))
        result.batches += 1
        if on_progress is not None:  # per result batch (rows settled so far, of all rows)
            on_progress(result.indexed + result.unchanged + len(result.rejects), len(refs))
    if unchanged_sources:
        store.put_sources(unchanged_sources)
    if on_progress is not None:
        on_progress(len(refs), len(refs))
    result.seconds = time.perf_counter() - t0
    return result
