"""Downloaded manifest images on disk, keyed by URL, with their HTTP validators.

Layout: ``ROOT/ab/<sha256(url)>.body`` (the bytes as served) beside
``ROOT/ab/<sha256(url)>.json`` (url, ETag, Last-Modified, sha256 of the body,
content type, fetched_at). The JSON is what makes a conditional request
possible; the body's sha256 is checked on every read, so a torn or tampered
body is never served and the URL is simply fetched again.

Size: with ``max_bytes`` (``Settings.fetch_cache_max_mb``) the directory is
kept under that budget by evicting the least recently used URLs
(:mod:`shoplens.files.disk_lru`; a hit touches the entry's JSON). An evicted
URL is just downloaded in full on its next run; both files are written under
temporary names and renamed, so eviction never removes one being written.
:meth:`FetchCache.prune` applies a budget at any time (``shoplens index`` does
after its run, ``shoplens gc`` too).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shoplens.files.atomic import write_atomic
from shoplens.files.disk_lru import DiskLru, PruneReport

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CacheEntry:
    url: str
    sha256: str  # of the body
    size: int
    etag: str | None
    last_modified: str | None
    content_type: str | None
    fetched_at: str  # ISO 8601 UTC of the last download or revalidation


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _entry_key(name: str) -> str:
    """``<key>.body`` and ``<key>.json`` are one entry."""
    return name.partition(".")[0]


class FetchCache:
    """One directory of cached responses; safe for threads and processes sharing it.

    ``max_bytes``: evict least recently used entries past this many bytes as
    responses are stored (None: only when :meth:`prune` is called).
    """

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._lru = DiskLru(self.root, entry_key=_entry_key)

    def _paths(self, url: str) -> tuple[Path, Path]:
        key = url_key(url)
        folder = self.root / key[:2]
        return folder / f"{key}.body", folder / f"{key}.json"

    def load(self, url: str) -> tuple[CacheEntry, bytes] | None:
        """The cached entry and body, or None when absent, unreadable or corrupt."""
        body_path, meta_path = self._paths(url)
        try:
            meta: dict[str, Any] = json.loads(meta_path.read_text("utf-8"))
            entry = CacheEntry(**meta)
            data = body_path.read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError) as exc:
            log.debug("ignoring unreadable cache entry for %s: %s", url, exc)
            return None
        if entry.url != url or hashlib.sha256(data).hexdigest() != entry.sha256:
            log.debug("ignoring cache entry for %s: body does not match its metadata", url)
            return None
        self._lru.touch(meta_path)
        return entry, data

    def store(
        self,
        url: str,
        data: bytes,
        sha256: str,
        *,
        etag: str | None,
        last_modified: str | None,
        content_type: str | None,
    ) -> CacheEntry:
        # Body first: a crash between the two writes leaves a body that fails
        # the old metadata's sha256, i.e. a miss, never a wrong hit. No fsync
        # for the same reason: a torn body is fetched again, which is cheaper
        # than an fsync per image on a nightly run.
        entry = CacheEntry(
            url=url,
            sha256=sha256,
            size=len(data),
            etag=etag,
            last_modified=last_modified,
            content_type=content_type,
            fetched_at=_now(),
        )
        body_path, meta_path = self._paths(url)
        meta = json.dumps(asdict(entry), indent=1).encode("utf-8")
        write_atomic(body_path, data, fsync=False)
        write_atomic(meta_path, meta, fsync=False)
        if self.max_bytes is not None:
            self._lru.wrote(len(data) + len(meta), self.max_bytes)
        return entry

    def revalidated(
        self, entry: CacheEntry, *, etag: str | None, last_modified: str | None
    ) -> CacheEntry:
        """Record a 304: new fetched_at, and validators the server chose to update."""
        fresh = replace(
            entry,
            etag=etag or entry.etag,
            last_modified=last_modified or entry.last_modified,
            fetched_at=_now(),
        )
        _, meta_path = self._paths(entry.url)
        write_atomic(meta_path, json.dumps(asdict(fresh), indent=1).encode("utf-8"), fsync=False)
        return fresh

    def prune(self, max_bytes: int, *, dry_run: bool = False) -> PruneReport:
        """Evict least recently used entries until the cache fits ``max_bytes``."""
        return self._lru.prune(max_bytes, dry_run=dry_run)
