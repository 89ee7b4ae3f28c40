"""One indexing run: manifest -> embeddings -> plan -> snapshot -> publish -> commit.

A running service (``shoplens.indexer.serving.live``) serves the published snapshot
plus every catalog row committed to the store, so a run must not commit its
products/images rows before its snapshot is published: they would show early
(new products found, deletions and metadata changes applied, seconds before
the switch), and stay if the run then failed. The order is therefore:

1. embed every photo not embedded yet (committed batch by batch: the
   embeddings cache is not the catalog, nothing of it shows);
2. plan (:meth:`CatalogStore.plan_catalog`): work the catalog changes out and
   reserve the vector ids of the new image rows, changing no catalog row;
3. build the snapshot from the catalog as the plan will leave it and publish
   it (:func:`build_snapshot` on :meth:`CatalogStore.planned`);
4. commit the plan's rows, with the reserved vector ids, right after.

Why publish before commit, not the other way round: whatever the snapshot and
the rows say, the live index serves the rows, taking a vector from the
snapshot for a row it holds and from the embeddings cache for any other. A
crash between 3 and 4 thus leaves the new snapshot serving the *old* catalog
(the rows it dropped or changed come from the cache; its new vector ids were
reserved, so no one else ever gets them, and nothing shows them), and the next
run, finding the same changes still to do, does the whole job. The other
order would serve the run's rows, unpublished, from the cache until a rerun.
A run that fails before step 3 publishes leaves every products/images row as
it was (the reserved ids are a harmless gap).

A service edit (PUT/DELETE through the live index) committed while the run
builds its snapshot is newer than the run's manifest: the commit leaves the
products it touched as the edit left them, as when runs committed their rows
before building.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shoplens.config import Settings
from shoplens.errors import Conflict, ManifestError
from shoplens.files.atomic import write_atomic
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import NewImage
from shoplens.indexer.engines.base import Fetch
from shoplens.indexer.engines.table import engine_for
from shoplens.indexer.ops.learn import record_learnt, shopper_examples
from shoplens.indexer.serving.snapshot import (
    CatalogVectors,
    build_snapshot,
    new_snapshot_id,
    read_facts,
)
from shoplens.indexer.sources.manifest import Reject, read_manifest, write_rejects
from shoplens.models.base import ImageEmbedder
from shoplens.models.progress import step

if TYPE_CHECKING:
    from shoplens.indexer.sources.fetch_hook import FetchHook

log = logging.getLogger(__name__)

LAST_RUN = "last_run.json"


@dataclass
class IndexReport:
    run_id: str
    manifest: str
    model: str
    snapshot_id: str
    indexed: int
    unchanged: int
    rejected: int
    removed: int
    products: int  # live products in the snapshot
    vectors: int  # vectors in the snapshot
    seconds: float
    embed_seconds: float
    images_per_s: float
    started_at: float
    rejects_path: str | None = None
    report_path: str | None = None
    rejects_sample: list[dict[str, Any]] = field(default_factory=list)

    def summary_line(self) -> str:
        return (
            f"indexed {self.indexed}, unchanged {self.unchanged}, rejected {self.rejected}, "
            f"removed {self.removed} in {self.seconds:.1f}s ({self.images_per_s:.1f} images/s)"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def run_lock(settings: Settings) -> Iterator[None]:
    """One indexing run per data dir at a time (released by the OS if killed)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(settings.data_dir / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Conflict(
                f"another `shoplens index` is running on {settings.data_dir}; wait for it"
            ) from None
        yield
    finally:
        os.close(fd)


def run_index(
    settings: Settings,
    manifest_path: Path,
    *,
    prune: bool = False,
    model: str | None = None,
    progress: bool = False,
    embedder: ImageEmbedder | None = None,
    fetch: Fetch | None = None,
    on_progress: Callable[[int, int], object] | None = None,
) -> IndexReport:
    """Index a manifest incrementally and publish a new snapshot.

    ``embedder`` overrides loading the configured model (tests, the service's
    reindex job reusing its loaded model); ``fetch`` handles http(s) image rows;
    ``on_progress(done, total)`` reports images processed.
    """
    started = time.time()
    t0 = time.perf_counter()
    if model is not None:
        settings = settings.model_copy(update={"model": model})
    manifest = read_manifest(Path(manifest_path))
    if embedder is None:
        from shoplens.models.registry import load_embedder

        # Exporting a model (once per machine) reports its own steps.
        embedder = load_embedder(settings, progress=progress)
    run_id = new_snapshot_id()
    with run_lock(settings), CatalogStore(settings.database(settings.db_path)) as store:
        emb = engine_for(settings)(
            settings,
            store,
            embedder,
            manifest.images,
            fetch=fetch,
            progress=progress,
            on_progress=on_progress,
        )
        rejects: list[Reject] = [*manifest.rejects, *emb.rejects]
        rejects.sort(key=lambda r: r.line)
        partial = manifest.partial | {r.product_id for r in emb.rejects if r.product_id}

        by_product: dict[str, list[NewImage]] = {}
        for pos, ref in enumerate(manifest.images):
            sha = emb.shas.get(pos)
            if sha is not None:
                by_product.setdefault(ref.product_id, []).append(NewImage(ref.source, sha))
        items = []
        for pid, product in manifest.products.items():
            imgs = by_product.get(pid, [])
            if not imgs and pid in partial:
                continue  # every image row of it was bad: leave it as it was
            items.append((product, imgs, pid not in partial))

        keep: set[str] | None = None
        if prune:
            if not items and manifest.rows:
                raise ManifestError(
                    "refusing to --prune: no row of the manifest could be indexed "
                    f"({len(rejects)} rejected), so every product would be removed"
                )
            keep = set(manifest.products) | partial
        # Nothing the service serves changes until the snapshot is published
        # (see the module docstring for the order and why).
        plan = store.plan_catalog(items, prune_keep=keep)

        processed = emb.indexed + emb.unchanged
        report = IndexReport(
            run_id=run_id,
            manifest=str(Path(manifest_path).resolve()),
            model=embedder.name,
            snapshot_id="",
            indexed=emb.indexed,
            unchanged=emb.unchanged,
            rejected=len(rejects),
            removed=plan.removed,
            products=0,
            vectors=0,
            seconds=0.0,
            embed_seconds=round(emb.seconds, 3),
            images_per_s=0.0,
            started_at=started,
            rejects_sample=[asdict(r) for r in rejects[:20]],
        )
        run_dir = settings.data_dir / "runs"
        if rejects:
            rejects_path = run_dir / f"{run_id}.rejects.csv"
            write_rejects(rejects_path, rejects)
            report.rejects_path = str(rejects_path)
        catalog = CatalogVectors(*store.planned(plan).live_vectors(embedder.name))
        # What `shoplens learn` learnt from shoppers' photos stays learnt.
        shoppers = shopper_examples(settings, embedder, catalog)
        # The adaptation fit and the vector index build grow with the catalog.
        with step(f"building the snapshot of {len(catalog.images)} photos", bar=progress):
            snapshot_id = build_snapshot(
                settings,
                catalog,
                model=embedder.name,
                dim=embedder.dim,
                preprocess=embedder.preprocess_config.to_dict(),
                head_dims=embedder.head_dims,
                build_facts={"run_id": run_id, "manifest": report.manifest},
                learn_also=shoppers.learn_also(),
                store=store,
            )
        # Right after the switch: a service reloading in between serves the new
        # snapshot with the old rows, which is the old catalog.
        _changed, report.removed = store.commit_plan(plan)
        record_learnt(settings, shoppers, snapshot_id)
        seconds = time.perf_counter() - t0
        facts = read_facts(settings.snapshots_dir / snapshot_id)
        report.snapshot_id = snapshot_id
        report.products = int(facts["counts"]["products"])
        report.vectors = int(facts["counts"]["vectors"])
        report.seconds = round(seconds, 3)
        report.images_per_s = round(processed / max(seconds, 1e-9), 2)
        report_path = run_dir / f"{run_id}.json"
        report.report_path = str(report_path)
        body = json.dumps(report.to_dict(), indent=2).encode()
        write_atomic(report_path, body)
        write_atomic(settings.snapshots_dir / snapshot_id / "run_report.json", body)
        write_atomic(settings.data_dir / LAST_RUN, body)
        _prune_runs(run_dir)
    log.info("published snapshot %s: %s", snapshot_id, report.summary_line())
    return report


class LazyFetch:
    """A :class:`FetchHook` made on first use: a manifest of local files never pays
    for the HTTP client, cache and download threads (a fifth of an unchanged re-run)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._stack = ExitStack()
        self._hook: FetchHook | None = None
        self._lock = threading.Lock()

    def _get(self) -> FetchHook:
        with self._lock:
            if self._hook is None:
                from shoplens.indexer.sources.fetch import FetchConfig, RemoteFetcher
                from shoplens.indexer.sources.fetch_hook import FetchHook

                config = FetchConfig.from_settings(self._settings)
                fetcher = self._stack.enter_context(
                    RemoteFetcher(self._settings.fetch_cache_dir, config)
                )
                self._hook = self._stack.enter_context(FetchHook(fetcher))
            return self._hook

    def prefetch(self, urls: Iterable[str]) -> None:
        wanted = list(urls)
        if wanted:
            self._get().prefetch(wanted)

    def __call__(self, url: str) -> bytes:
        return self._get()(url)

    def close(self) -> None:
        """Cancels what is still in flight (when a fetcher was ever made)."""
        self._stack.close()


@contextmanager
def remote_fetch(settings: Settings) -> Iterator[LazyFetch]:
    """The fetch hook for http(s) manifest rows, configured by ``settings.fetch_*``.

    Downloads are cached in ``settings.fetch_cache_dir`` (a rerun revalidates
    with ETag/Last-Modified); closing cancels what is still in flight.
    """
    hook = LazyFetch(settings)
    try:
        yield hook
    finally:
        hook.close()


KEEP_RUNS = 50


def _prune_runs(run_dir: Path, keep: int = KEEP_RUNS) -> None:
    """Keep the reports (and rejects files) of the last ``keep`` runs."""
    reports = sorted(p for p in run_dir.glob("*.json"))
    for old in reports[:-keep]:
        old.unlink(missing_ok=True)
        old.with_name(old.stem + ".rejects.csv").unlink(missing_ok=True)


def last_run(settings: Settings) -> dict[str, Any] | None:
    try:
        data = json.loads((settings.data_dir / LAST_RUN).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
