"""The local engine: a pipeline in which threads run the ingest step (read, hash,
decode, store the photo, prepare; ``ingest.Ingest``) while the model embeds the
previous batch.

At most ``2 * batch_size`` images are in flight (read or prepared, not yet
embedded), so memory stays flat however long the manifest is. Each batch's
embeddings are committed in one transaction: a killed run loses at most the
batch in flight, and a rerun skips every content hash already embedded.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from shoplens.config import Settings
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.engines.base import EmbedResult, Fetch, OnProgress
from shoplens.indexer.engines.ingest import (
    Ingest,
    Outcome,
    Prepared,
    Rejected,
    SourceRow,
    Unchanged,
)
from shoplens.indexer.sources.manifest import ImageRef, Reject
from shoplens.models.base import ImageEmbedder
from shoplens.models.progress import step


def embed_missing(
    settings: Settings,
    store: CatalogStore,
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    *,
    fetch: Fetch | None = None,
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> EmbedResult:
    """Embed every referenced image whose content is not embedded yet for this model.

    ``on_progress(done, total)`` is called after each image (e.g. an admin job's
    progress). A run that takes more than a moment says how far it got: a bar
    when ``progress`` and stderr is a TTY, log lines otherwise.
    """
    t0 = time.perf_counter()
    model = embedder.name
    result = EmbedResult()
    embedded = store.embedded_shas_all(model)
    ingest = Ingest(settings, store, embedder, embedded, fetch)
    batch_size = max(1, settings.batch_size)
    window = 2 * batch_size
    batch: list[tuple[int, Prepared]] = []
    pending_sources: list[SourceRow] = []

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
        what = f"embedding {len(refs)} photos ({model})"
        with step(what, total=len(refs), unit="photos", bar=progress) as shown:
            done = 0
            inflight: deque[tuple[int, Future[Outcome]]] = deque()
            it = iter(enumerate(refs))
            while True:
                while len(inflight) < window:
                    nxt = next(it, None)
                    if nxt is None:
                        break
                    inflight.append((nxt[0], pool.submit(ingest, nxt[1])))
                if not inflight:
                    break
                pos, fut = inflight.popleft()
                out = fut.result()
                ref = refs[pos]
                if isinstance(out, Rejected):
                    result.rejects.append(Reject(ref.line, ref.product_id, out.reason))
                elif isinstance(out, Unchanged):
                    result.unchanged += 1
                    result.shas[pos] = out.sha256
                    if out.source_row:
                        pending_sources.append(out.source_row)
                else:
                    batch.append((pos, out))
                    if len(batch) >= batch_size:
                        flush()
                shown.advance()
                done += 1
                if on_progress is not None:
                    on_progress(done, len(refs))
            flush()
    if pending_sources:
        store.put_sources(pending_sources)
    result.seconds = time.perf_counter() - t0
    return result
