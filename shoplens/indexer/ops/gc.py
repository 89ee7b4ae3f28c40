"""``shoplens gc``: delete what nothing references any more, and keep the caches in budget.

Deleting a product (API DELETE, ``shoplens index --prune``) or replacing its
photos (PUT) only marks image rows deleted; the stored photo
(``DATA_DIR/images/ab/<sha256>.jpg``) and its embedding rows stay. A sha256 is
collected when all of this holds:

- no live image row of the catalog uses it (any product, any model);
- no snapshot kept on disk lists it (``idmap.json``): the published one and the
  previous ones ``shoplens.indexer.serving.snapshot`` keeps, which a service may still
  be serving;
- its photo and every embedding row of it were written more than the grace
  period ago (``Settings.gc_grace_s``): a PUT writes both a moment before
  committing the image row that uses them.

Runs are kept out: gc takes the data dir's index lock (``run_lock``) for its
whole duration and refuses to start while a ``shoplens index`` or an admin
re-index job holds it, because a run embeds (and writes photos) first and
commits the rows that use them last. Service writes cannot take that lock, so
each batch is deleted in one SQLite write transaction that re-checks the rows
(:meth:`CatalogStore.collect`): an image row committed meanwhile either shows
up in the check or waits for the batch to finish.

A collected sha256 loses its photo, its embedding rows (every model), its
source-cache rows and its cached renditions. Image rows are kept (vector ids
are never reused; a deleted id answers 404). Stale temporary files of killed
writers go too, and both caches are brought under their budgets
(``shoplens.files.disk_lru``). ``dry_run`` reports the same counts and
deletes nothing. SQLite reuses the pages of deleted rows; the file itself only
shrinks with a ``VACUUM``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from shoplens.config import Settings
from shoplens.errors import BadParameter, Conflict, SnapshotError
from shoplens.files.disk_lru import MIB, STALE_TEMP_S, DiskLru, PruneReport
from shoplens.indexer.catalog.collect import EmbeddingStat
from shoplens.indexer.catalog.photos import image_id_for, photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.ops.build import run_lock
from shoplens.indexer.serving.snapshot import IDMAP, current_id
from shoplens.indexer.sources.fetch_cache import FetchCache

log = logging.getLogger(__name__)

_PHOTO = re.compile(r"^[0-9a-f]{64}\.jpg$")
_BATCH = 500


@dataclass
class GcReport:
    dry_run: bool
    grace_s: float
    referenced: int = 0  # distinct sha256 that live rows or kept snapshots use
    snapshots: int = 0  # snapshots whose references were read
    photos: int = 0
    photo_bytes: int = 0
    embeddings: int = 0  # rows, all models
    embedding_bytes: int = 0  # their vectors (pages SQLite reuses)
    renditions: int = 0
    rendition_bytes: int = 0
    temp_files: int = 0
    temp_bytes: int = 0
    young: int = 0  # unreferenced but written within the grace period: kept
    snapshot_only: int = 0  # no live row uses them, a kept snapshot still does: kept
    caches: dict[str, PruneReport] = field(default_factory=dict)

    @property
    def bytes_freed(self) -> int:
        """Files removed (photos, renditions, temporary files, cache entries);
        embedding bytes are not counted (the database file does not shrink)."""
        return (
            self.photo_bytes
            + self.rendition_bytes
            + self.temp_bytes
            + sum(c.bytes_freed for c in self.caches.values())
        )

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [
            f"{verb} {self.photos} photos ({_human(self.photo_bytes)}), {self.embeddings} "
            f"embedding rows ({_human(self.embedding_bytes)}), {self.renditions} renditions "
            f"({_human(self.rendition_bytes)}), {self.temp_files} stale temporary files "
            f"({_human(self.temp_bytes)})",
            f"kept {self.referenced} images the catalog or its {self.snapshots} snapshots "
            f"reference ({self.snapshot_only} only by a snapshot), {self.young} unreferenced "
            f"but younger than {self.grace_s:g}s",
        ]
        for name, c in self.caches.items():
            out.append(
                f"{name} cache: {_human(c.bytes_before)} of {_human(c.max_bytes)}, {verb} "
                f"{c.entries_evicted} least recently used entries ({_human(c.bytes_evicted)})"
            )
        freed = "would free" if self.dry_run else "freed"
        out.append(f"{freed} {_human(self.bytes_freed)} of files ({self.bytes_freed} bytes)")
        return out


def _human(n: int) -> str:
    """``512`` -> ``"512 B"``, ``7710`` -> ``"7.5 KiB"``, ``3 << 30`` -> ``"3.0 GiB"``."""
    for unit, size in (("GiB", 1 << 30), ("MiB", MIB), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def collect_garbage(
    settings: Settings,
    *,
    dry_run: bool = False,
    grace_s: float | None = None,
    now: float | None = None,
) -> GcReport:
    """Delete unreferenced photos and embeddings, prune the caches; see the module docstring.

    ``Conflict`` while a re-index holds the data dir; ``now`` is the clock the
    grace period is measured against (default: the current time).
    """
    grace = settings.gc_grace_s if grace_s is None else grace_s
    if grace < 0:
        raise BadParameter(f"the grace period must be at least 0 seconds, got {grace}")
    clock = time.time() if now is None else now
    cutoff = clock - grace
    if settings.database_url is None and not settings.db_path.is_file():
        raise BadParameter(
            f"no catalog database at {settings.db_path}: nothing to collect (is --data-dir right?)"
        )
    report = GcReport(dry_run=dry_run, grace_s=grace)
    with ExitStack() as stack:
        try:
            stack.enter_context(run_lock(settings))
        except Conflict:
            raise Conflict(
                f"a re-index (`shoplens index` or an admin job) is running on "
                f"{settings.data_dir}; run `shoplens gc` when it has finished"
            ) from None
        store = stack.enter_context(CatalogStore(settings.database(settings.db_path)))
        snap_shas, report.snapshots = snapshot_references(settings)
        live = store.live_shas()
        referenced = live | snap_shas
        report.referenced = len(referenced)
        stats = store.embedding_stats()
        photos, temps = _scan_photos(settings.data_dir / "images", clock - max(grace, STALE_TEMP_S))
        report.snapshot_only = len(((photos.keys() | stats.keys()) & snap_shas) - live)
        old: list[str] = []
        for sha in sorted((photos.keys() | stats.keys()) - referenced):
            if _written_since(sha, photos, stats, cutoff):
                report.young += 1
            else:
                old.append(sha)
        if dry_run:
            _tally_dry(report, settings, old, photos, stats)
        else:
            for i in range(0, len(old), _BATCH):
                _collect_batch(report, settings, store, old[i : i + _BATCH], cutoff)
        for path, size in temps:
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            report.temp_files += 1
            report.temp_bytes += size
        report.caches = prune_caches(settings, dry_run=dry_run)
    for line in report.lines():
        log.info("gc: %s", line)
    return report


def prune_caches(settings: Settings, *, dry_run: bool = False) -> dict[str, PruneReport]:
    """Bring the renditions and fetch caches under their budgets."""
    return {
        "renditions": DiskLru(settings.renditions_cache_dir).prune(
            settings.renditions_cache_max_mb * MIB, dry_run=dry_run
        ),
        "fetch": FetchCache(settings.fetch_cache_dir).prune(
            settings.fetch_cache_max_mb * MIB, dry_run=dry_run
        ),
    }


def snapshot_references(settings: Settings) -> tuple[set[str], int]:
    """``(sha256 listed by the snapshots on disk, how many snapshots)``.

    A snapshot whose id map cannot be read cannot be loaded by a service
    either (its files are checksummed), so it protects nothing, except the
    published one: then gc refuses to run rather than guess.
    """
    root = settings.snapshots_dir
    if not root.is_dir():
        return set(), 0
    published = current_id(settings)
    shas: set[str] = set()
    count = 0
    for folder in sorted(root.iterdir()):
        if not folder.is_dir() or folder.name.endswith(".tmp"):
            continue  # .tmp: a killed run's leftover (no run is building: we hold the lock)
        try:
            idmap = json.loads((folder / IDMAP).read_text(encoding="utf-8"))
            listed = [str(s) for s in idmap["sha256"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            if folder.name == published:
                raise SnapshotError(
                    f"cannot read {IDMAP} of the published snapshot {folder.name} ({exc}); "
                    "gc will not guess what it references"
                ) from exc
            log.warning("snapshot %s has no readable %s (%s): ignored", folder.name, IDMAP, exc)
            continue
        shas.update(listed)
        count += 1
    return shas, count


def _scan_photos(
    images_dir: Path, temp_cutoff: float
) -> tuple[dict[str, tuple[int, float]], list[tuple[str, int]]]:
    """``({sha256: (size, mtime)}, [(stale temporary file, size)])`` of the photo store."""
    photos: dict[str, tuple[int, float]] = {}
    temps: list[tuple[str, int]] = []
    if not images_dir.is_dir():
        return photos, temps
    for sub in os.scandir(images_dir):
        if not sub.is_dir(follow_symlinks=False):
            continue
        for f in os.scandir(sub.path):
            try:
                st = f.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not f.is_file(follow_symlinks=False):
                continue
            if _PHOTO.match(f.name):
                photos[f.name[:64]] = (st.st_size, st.st_mtime)
            elif f.name.startswith(".") and f.name.endswith(".tmp") and st.st_mtime < temp_cutoff:
                temps.append((f.path, st.st_size))
    return photos, temps


def _written_since(
    sha: str,
    photos: dict[str, tuple[int, float]],
    stats: dict[str, EmbeddingStat],
    cutoff: float,
) -> bool:
    photo = photos.get(sha)
    stat = stats.get(sha)
    return (photo is not None and photo[1] >= cutoff) or (
        stat is not None and stat.written_at >= cutoff
    )


def _renditions(settings: Settings, sha: str) -> list[tuple[Path, int]]:
    """The cached renditions of a photo: ``IMAGE_ID-wWIDTH.FORMAT`` in the service's
    layout (shoplens.service.renditions; the service tests check gc finds them)."""
    image_id = image_id_for(sha)
    out: list[tuple[Path, int]] = []
    for path in (settings.renditions_cache_dir / image_id[:2]).glob(f"{image_id}-w*"):
        with contextlib.suppress(FileNotFoundError):
            out.append((path, path.stat().st_size))
    return out


def _tally_dry(
    report: GcReport,
    settings: Settings,
    old: list[str],
    photos: dict[str, tuple[int, float]],
    stats: dict[str, EmbeddingStat],
) -> None:
    for sha in old:
        if sha in photos:
            report.photos += 1
            report.photo_bytes += photos[sha][0]
        if sha in stats:
            report.embeddings += stats[sha].rows
            report.embedding_bytes += stats[sha].bytes
        for _path, size in _renditions(settings, sha):
            report.renditions += 1
            report.rendition_bytes += size


def _collect_batch(
    report: GcReport, settings: Settings, store: CatalogStore, batch: list[str], cutoff: float
) -> None:
    def remove_photos(orphans: list[str]) -> list[str]:
        # Called inside the store's write transaction: no image row can be
        # committed while the photos go.
        done: list[str] = []
        for sha in orphans:
            path = photo_path(settings.data_dir, sha)
            try:
                st = path.stat()
            except FileNotFoundError:
                done.append(sha)  # an embedding without a photo
                continue
            if st.st_mtime >= cutoff:
                continue  # written again since the scan
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("cannot delete photo %s: %s (its rows are kept)", path, exc)
                continue
            report.photos += 1
            report.photo_bytes += st.st_size
            done.append(sha)
        return done

    collected, rows, size = store.collect(batch, written_before=cutoff, remove_files=remove_photos)
    report.embeddings += rows
    report.embedding_bytes += size
    for sha in collected:
        for path, nbytes in _renditions(settings, sha):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                report.renditions += 1
                report.rendition_bytes += nbytes
