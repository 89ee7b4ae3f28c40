"""Batch embedding as a pipeline: workers read, hash, decode and prepare while
the model embeds the previous batch.

At most ``2 * batch_size`` images are in flight (read or prepared, not yet
embedded), so memory stays flat however long the manifest is. Each batch's
embeddings are committed in one transaction: a killed run loses at most the
batch in flight, and a rerun skips every content hash already embedded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from shoplens.config import Settings
from shoplens.errors import ShoplensError
from shoplens.files.atomic import write_atomic
from shoplens.indexer.catalog.photos import PHOTO_MAX_SIDE, photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.sources.manifest import ImageRef, Reject
from shoplens.models.base import FloatArray, ImageEmbedder

log = logging.getLogger(__name__)

# Plug-in point for remote images: URL -> bytes, raising ShoplensError (or
# OSError) with a reason that becomes the row's reject message.
Fetch = Callable[[str], bytes]

REMOTE_UNSUPPORTED = "remote images not supported yet"


@dataclass(frozen=True)
class _Unchanged:
    sha256: str
    source_row: tuple[str, int, int, str] | None


@dataclass(frozen=True)
class _Prepared:
    sha256: str
    array: FloatArray
    source_row: tuple[str, int, int, str] | None


@dataclass(frozen=True)
class _Failed:
    reason: str


_Outcome = _Unchanged | _Prepared | _Failed


@dataclass
class EmbedResult:
    """What the pipeline did with each image reference."""

    shas: dict[int, str] = field(default_factory=dict)  # ref position -> sha256
    rejects: list[Reject] = field(default_factory=list)
    indexed: int = 0
    unchanged: int = 0
    batches: int = 0
    seconds: float = 0.0


class _Worker:
    """Per-image work done on the thread pool."""

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        embedder: ImageEmbedder,
        embedded: set[str],
        fetch: Fetch | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.embedded = embedded
        self.fetch = fetch
        self.draft = int(embedder.preprocess_config.resize)

    def _done(self, sha: str) -> bool:
        return sha in self.embedded and photo_path(self.settings.data_dir, sha).is_file()

    def _read(self, ref: ImageRef) -> tuple[bytes, tuple[str, int, int, str] | None] | _Outcome:
        limit = self.settings.max_image_bytes
        if ref.url is not None:
            if self.fetch is None:
                return _Failed(REMOTE_UNSUPPORTED)
            try:
                data = self.fetch(ref.url)
            except (ShoplensError, OSError) as exc:
                return _Failed(f"cannot fetch {ref.url}: {getattr(exc, 'message', exc)}")
            if len(data) > limit:
                return _Failed(f"image is {len(data)} bytes, more than the limit of {limit}")
            return data, None
        assert ref.path is not None  # a manifest ref is a URL or a path
        try:
            st = os.stat(ref.path)
        except FileNotFoundError:
            return _Failed(f"image file not found: {ref.source}")
        except OSError as exc:
            return _Failed(f"cannot read image {ref.source}: {exc.strerror}")
        if not os.path.isfile(ref.path):
            return _Failed(f"image {ref.source} is not a file")
        if st.st_size > limit:
            return _Failed(f"image is {st.st_size} bytes, more than the limit of {limit}")
        key = str(ref.path)
        cached = self.store.cached_sha(key, st.st_size, st.st_mtime_ns)
        if cached is not None and self._done(cached):
            return _Unchanged(cached, None)
        try:
            with open(ref.path, "rb") as f:
                data = f.read()
        except OSError as exc:
            return _Failed(f"cannot read image {ref.source}: {exc.strerror}")
        sha = hashlib.sha256(data).hexdigest()
        return data, (key, st.st_size, st.st_mtime_ns, sha)

    def __call__(self, ref: ImageRef) -> _Outcome:
        try:
            return self._process(ref)
        except MemoryError:
            raise
        except Exception as exc:  # one odd image must not stop the run
            log.warning("image %s (line %d) failed: %r", ref.source, ref.line, exc)
            return _Failed(f"image {ref.source}: cannot be processed ({type(exc).__name__})")

    def _process(self, ref: ImageRef) -> _Outcome:
        from shoplens.models.decode import decode_image, encode_jpeg

        got = self._read(ref)
        if not isinstance(got, tuple):
            return got
        data, source_row = got
        sha = hashlib.sha256(data).hexdigest() if source_row is None else source_row[3]
        if self._done(sha):
            return _Unchanged(sha, source_row)
        try:
            image = decode_image(
                data, max_pixels=self.settings.max_image_pixels, draft_size=self.draft
            )
        except ShoplensError as exc:
            return _Failed(f"image {ref.source}: {exc.message}")
        target = photo_path(self.settings.data_dir, sha)
        if not target.is_file():
            write_atomic(target, encode_jpeg(image, max_side=PHOTO_MAX_SIDE), fsync=False)
        if sha in self.embedded:
            return _Unchanged(sha, source_row)
        return _Prepared(sha, self.embedder.prepare(image), source_row)


def _progress(total: int, enabled: bool) -> Iterator[Callable[[int], object]]:
    """Yields an ``update(n)`` callable; a tqdm bar only on a TTY."""
    if enabled and sys.stderr.isatty():
        from tqdm import tqdm

        with tqdm(total=total, unit="img", file=sys.stderr, dynamic_ncols=True) as bar:
            yield bar.update
    else:
        yield lambda n: None


def embed_missing(
    settings: Settings,
    store: CatalogStore,
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    *,
    fetch: Fetch | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], object] | None = None,
) -> EmbedResult:
    """Embed every referenced image whose content is not embedded yet for this model.

    ``on_progress(done, total)`` is called after each image (e.g. an admin job's
    progress); ``progress`` shows a bar when stderr is a TTY.
    """
    t0 = time.perf_counter()
    model = embedder.name
    result = EmbedResult()
    embedded = store.embedded_shas_all(model)
    worker = _Worker(settings, store, embedder, embedded, fetch)
    batch_size = max(1, settings.batch_size)
    window = 2 * batch_size
    batch: list[tuple[int, _Prepared]] = []
    pending_sources: list[tuple[str, int, int, str]] = []

    def flush() -> None:
        if not batch:
            return
        arrays = np.stack([p.array for _, p in batch]).astype(np.float32, copy=False)
        vectors = embedder.embed_prepared(arrays)
        items = [(p.sha256, vectors[i]) for i, (_, p) in enumerate(batch)]
        sources = pending_sources + [p.source_row for _, p in batch if p.source_row]
        store.put_embeddings(model, items, sources)
        embedded.update(p.sha256 for _, p in batch)
        result.indexed += len(batch)
        result.batches += 1
        for pos, p in batch:
            result.shas[pos] = p.sha256
        batch.clear()
        pending_sources.clear()

    announce = getattr(fetch, "prefetch", None)
    if callable(announce):  # a read-ahead fetcher (FetchHook) wants the URLs in order
        announce([ref.url for ref in refs if ref.url is not None])
    workers = max(1, settings.decode_workers)
    with ThreadPoolExecutor(workers, thread_name_prefix="shoplens-decode") as pool:
        for update in _progress(len(refs), progress):
            done = 0
            inflight: deque[tuple[int, Future[_Outcome]]] = deque()
            it = iter(enumerate(refs))
            while True:
                while len(inflight) < window:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    inflight.append((nxt[0], pool.submit(worker, nxt[1])))
                if not inflight:
                    break
                pos, fut = inflight.popleft()
                out = fut.result()
                ref = refs[pos]
                if isinstance(out, _Failed):
                    result.rejects.append(Reject(ref.line, ref.product_id, out.reason))
                elif isinstance(out, _Unchanged):
                    result.unchanged += 1
                    result.shas[pos] = out.sha256
                    if out.source_row:
                        pending_sources.append(out.source_row)
                else:
                    batch.append((pos, out))
                    if len(batch) >= batch_size:
                        flush()
                update(1)
                done += 1
                if on_progress is not None:
                    on_progress(done, len(refs))
            flush()
    if pending_sources:
        store.put_sources(pending_sources)
    result.seconds = time.perf_counter() - t0
    return result
