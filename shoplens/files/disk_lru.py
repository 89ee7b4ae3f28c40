"""Cache directories kept under a byte budget by evicting least recently used entries.

The clock is the files' mtime: a cache hit touches its entry (:meth:`DiskLru.touch`)
and eviction deletes the oldest entries first, down to ``LOW_WATER`` of the
budget so that the next few writes do not each trigger a scan. atime is not
used: on ``relatime``/``noatime`` mounts (the usual ones) reads do not move it.

Safe beside readers and writers in other threads and processes:

- every cache here writes a file under a dot-name and renames it into place;
  a scan never counts a dot-file and deletes one only once it is
  ``STALE_TEMP_S`` old (left by a killed writer), so a file being written is
  never removed;
- a reader that loses the race to an eviction finds no file, which each cache
  treats as a miss (a rendition is made again, a photo downloaded again);
- an entry touched or rewritten after the scan saw it is skipped: its files'
  mtimes are checked again just before they are deleted;
- each process counts the bytes it writes and scans again once that reaches
  ``RESCAN_FRACTION`` of the budget (or the last scan's total plus it passes
  the budget), so processes sharing a directory overshoot by at most that
  much each, whatever the others wrote.

An entry may span several files (the fetch cache keeps ``KEY.body`` beside
``KEY.json``): ``entry_key(file name)`` groups them; an entry is as recent as
its newest file and is deleted whole. Directories are never removed (a writer
may be about to create a file in one).
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MIB = 1024 * 1024
LOW_WATER = 0.9
RESCAN_FRACTION = 0.05
STALE_TEMP_S = 3600.0


@dataclass(frozen=True)
class PruneReport:
    """What one scan found and (unless ``dry_run``) removed."""

    max_bytes: int
    bytes_before: int  # entries' bytes when scanned (temporary files not counted)
    entries_before: int
    entries_evicted: int
    files_evicted: int
    bytes_evicted: int
    temp_files: int  # stale temporary files of killed writers
    temp_bytes: int
    dry_run: bool = False

    @property
    def bytes_after(self) -> int:
        return self.bytes_before - self.bytes_evicted

    @property
    def bytes_freed(self) -> int:
        return self.bytes_evicted + self.temp_bytes


@dataclass
class _Entry:
    size: int = 0
    mtime_ns: int = 0
    files: list[tuple[str, int]] = field(default_factory=list)  # (path, mtime_ns when scanned)


def _whole_name(name: str) -> str:
    return name


class DiskLru:
    """One cache directory (any depth below ``root``) and its eviction bookkeeping."""

    def __init__(self, root: Path, *, entry_key: Callable[[str], str] = _whole_name) -> None:
        self.root = Path(root)
        self._entry_key = entry_key
        self._lock = threading.Lock()
        self._known: int | None = None  # the entries' bytes after the last scan
        self._written = 0  # bytes this process wrote since that scan
        self._pruning = False

    @staticmethod
    def touch(path: Path) -> None:
        """Mark a hit: the entry becomes the most recently used."""
        # Evicted in between, or a read-only mount: a cache hit never fails on it.
        with contextlib.suppress(OSError):
            os.utime(path)

    def wrote(self, nbytes: int, max_bytes: int) -> PruneReport | None:
        """Record ``nbytes`` just written; scans (and evicts) when due. Never raises
        for a file another process removed meanwhile; one scan at a time per object
        (a writer arriving meanwhile does not wait for it)."""
        with self._lock:
            self._written += nbytes
            if self._pruning or not self._due(max_bytes):
                return None
            self._pruning = True
        try:
            while True:
                report = self.prune(max_bytes)
                with self._lock:
                    # Writers that arrived during the scan did not wait for it; if
                    # what they wrote makes a scan due, this thread scans again, so
                    # the budget holds once the last writer returns. (With nothing
                    # written meanwhile _written is 0: no loop on entries in use.)
                    # Cleared under the same lock as the check: a writer arriving
                    # between the two would otherwise be neither scanned nor waited for.
                    if not (self._written and self._due(max_bytes)):
                        self._pruning = False
                        return report
        except BaseException:
            with self._lock:
                self._pruning = False
            raise

    def _due(self, max_bytes: int) -> bool:
        """Whether a scan is due (call with ``_lock`` held)."""
        return (
            self._known is None
            or self._known + self._written > max_bytes
            or self._written >= max_bytes * RESCAN_FRACTION
        )

    def prune(self, max_bytes: int, *, dry_run: bool = False) -> PruneReport:
        """Evict least recently used entries until at most ``LOW_WATER * max_bytes``
        remain, when more than ``max_bytes`` are there; remove stale temporary files."""
        with self._lock:
            counted = self._written
        now = time.time()
        entries, temps = self._scan(now)
        total = sum(e.size for e in entries.values())
        evicted_entries = evicted_files = evicted_bytes = 0
        if total > max_bytes:
            target = int(max_bytes * LOW_WATER)
            remaining = total
            for entry in sorted(entries.values(), key=lambda e: (e.mtime_ns, e.files[0][0])):
                if remaining <= target:
                    break
                if not dry_run and not self._delete(entry):
                    continue
                remaining -= entry.size
                evicted_entries += 1
                evicted_files += len(entry.files)
                evicted_bytes += entry.size
        temp_bytes = 0
        for path, size in temps:
            if not dry_run:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            temp_bytes += size
        report = PruneReport(
            max_bytes=max_bytes,
            bytes_before=total,
            entries_before=len(entries),
            entries_evicted=evicted_entries,
            files_evicted=evicted_files,
            bytes_evicted=evicted_bytes,
            temp_files=len(temps),
            temp_bytes=temp_bytes,
            dry_run=dry_run,
        )
        if not dry_run:
            with self._lock:
                self._known = report.bytes_after
                # Writes made during the scan stay counted (maybe twice: the
                # next scan just comes a little earlier).
                self._written = max(0, self._written - counted)
            if evicted_entries:
                log.info(
                    "cache %s: evicted %d entries (%d bytes) to stay under %d bytes",
                    self.root,
                    evicted_entries,
                    evicted_bytes,
                    max_bytes,
                )
        return report

    def _scan(self, now: float) -> tuple[dict[str, _Entry], list[tuple[str, int]]]:
        entries: dict[str, _Entry] = {}
        temps: list[tuple[str, int]] = []
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                path = os.path.join(dirpath, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue  # evicted or renamed by someone else meanwhile
                if not stat.S_ISREG(st.st_mode):
                    continue
                if name.startswith("."):
                    if now - st.st_mtime > STALE_TEMP_S:
                        temps.append((path, st.st_size))
                    continue
                entry = entries.setdefault(os.path.join(dirpath, self._entry_key(name)), _Entry())
                entry.size += st.st_size
                entry.mtime_ns = max(entry.mtime_ns, st.st_mtime_ns)
                entry.files.append((path, st.st_mtime_ns))
        return entries, temps

    @staticmethod
    def _delete(entry: _Entry) -> bool:
        """Delete the entry's files unless one was touched or rewritten since the scan."""
        for path, seen in entry.files:
            try:
                if os.lstat(path).st_mtime_ns != seen:
                    return False
            except FileNotFoundError:
                continue
        for path, _ in entry.files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:  # keep going: one unremovable file must not stop eviction
                log.warning("cannot evict %s from the cache: %s", path, exc)
        return True
