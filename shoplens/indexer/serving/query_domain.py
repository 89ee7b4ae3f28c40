"""Where shoppers' photos sit in feature space: the running mean of the photo
searches a studio catalog serves, and query centring on it.

On a studio catalog (one photo per product on white, nothing to learn an
adaptation from) a shopper's photo and the right studio photo differ in ways
every shopper photo shares: shelves, hands, clutter, light. That shared part
pulls every query towards the same few catalog photos. Subtracting the mean of
the shop's own searches from each query removes it (query centring, the first
order of hubness reduction). It needs no labels and no photo: only the running
sum and count of the searches' vectors, kept per index space.

Measured on the grocery studio catalog (``benchmarks/results/quality.md``,
dev = train photos, val reported): R@1 0.41 -> 0.45 on dev and 0.42 -> 0.47 on
val from 30 unlabelled searches on, and it stacks with geometric re-ranking
(val 0.48 -> 0.51-0.53). A snapshot that learnt an adaptation (LDA) is already
centred on its photos' mean and gains nothing, so only studio snapshots use it.

Stored as ``data_dir/query_domain/<model as a folder name>/<space>.npz`` (sum as float64, count),
merged under a file lock by every process that serves the data dir
(replicas add their own searches), written off the request path by
:meth:`QueryDomain.sync`. Past :data:`MAX_WEIGHT` searches the old ones fade
(sum and count scaled down together), so the mean follows the shop; a burst
of one photo counts once (:data:`NEAR_DUPLICATE`). Measured with one product
making 20 % of the searches, val R@1 stays 0.47 (its own R@1 unchanged); at
50 % it falls to 0.42-0.45 (still above uncentred 0.416), and the flooded
product loses most; a flood of distinct photos of one product could push it
there, the dedupe only stops the cheap flood (one photo repeated).
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from shoplens.files.atomic import write_atomic
from shoplens.indexer.serving.query import shifted
from shoplens.models.base import l2_normalise
from shoplens.models.cache import safe_name

log = logging.getLogger(__name__)

F32 = NDArray[np.float32]
F64 = NDArray[np.float64]

# Searches seen before queries are centred: the harness reached its gain from
# 30 on (dev R@1 0.410 -> 0.457 at 30, 0.459 at 300); fewer give a noisy mean.
MIN_SEARCHES = 30
# How much of the mean is subtracted (1 = all; dev flat between 0.5 and 1).
WEIGHT = 1.0
# The mean's memory: past this many searches, older ones fade.
MAX_WEIGHT = 10_000.0
# A search this close (cosine) to one of the last RECENT observed counts once:
# a burst of one photo (a retrying app, a flood meant to push the mean towards
# one product) adds one search. Distinct photos of one shelf stay below it
# (grocery train photos against the 64 shot before them: p99 0.959, 0.1 % above).
NEAR_DUPLICATE = 0.98
RECENT = 64
FOLDER = "query_domain"


class QueryDomain:
    """Running mean of the query vectors of one model's photo searches, per index space.

    Thread-safe. ``observe`` and ``centre`` are what a search calls (a vector
    add and a subtract); ``sync`` merges this process's new searches into the
    shared file and reads what other processes added.
    """

    def __init__(self, data_dir: Path, model: str, *, enabled: bool = True) -> None:
        self._folder = data_dir / FOLDER / safe_name(model)  # open_clip:ViT-B-32 too
        self._enabled = enabled
        self._lock = threading.Lock()
        # Per space: totals as last read from disk, and this process's searches since.
        self._base: dict[str, tuple[F64, float]] = {}
        self._pending: dict[str, tuple[F64, float]] = {}
        self._loaded: set[str] = set()
        # The last RECENT observed vectors per space (memory only), to count a burst
        # once: a ring of rows and how many were written (no stacking per search).
        self._recent: dict[str, tuple[F64, int]] = {}

    @property
    def enabled(self) -> bool:
        return self._enabled

    def searches(self, space: str) -> float:
        """How many searches (after fading) the mean of ``space`` is made of."""
        self._ensure_loaded(space)
        with self._lock:
            return self._count(space)

    def observe(self, space: str, vector: F32) -> bool:
        """Add one search's index-space query vector (normalised here) to ``space``;
        False when it was not counted (a near-duplicate of a recent search)."""
        if not self._enabled:
            return False
        v = l2_normalise(np.asarray(vector, np.float32).reshape(1, -1))[0].astype(np.float64)
        self._ensure_loaded(space)
        with self._lock:
            # (Defaults built only when missing: a zeroed ring per search cost ~0.1 ms.)
            total, n = self._pending.get(space) or (np.zeros_like(v), 0.0)
            if total.shape != v.shape:
                return False  # a vector of another space: never mixed in
            ring, written = self._recent.get(space) or (np.zeros((RECENT, len(v))), 0)
            if written and float(np.max(ring[: min(written, RECENT)] @ v)) >= NEAR_DUPLICATE:
                return False
            ring[written % RECENT] = v
            self._recent[space] = (ring, written + 1)
            self._pending[space] = (total + v, n + 1.0)
            return True

    def centre(self, space: str, vector: F32) -> F32:
        """``vector`` minus the searches' mean, normalised; as it is below MIN_SEARCHES."""
        if not self._enabled:
            return vector
        self._ensure_loaded(space)
        with self._lock:
            n = self._count(space)
            if n < MIN_SEARCHES:
                return vector
            mean = self._sum(space) / n
        if mean.shape != vector.shape:
            return vector
        query = np.asarray(vector, np.float32).reshape(1, -1)
        out: F32 = shifted(query, mean.astype(np.float32), WEIGHT).reshape(-1)
        return out

    def sync(self) -> None:
        """Merge this process's searches into the shared files and read the others'."""
        if not self._enabled:
            return
        with self._lock:
            spaces = set(self._pending) | self._loaded
            pending, self._pending = self._pending, {}
        for space in spaces:
            add = pending.get(space)
            if add is None:  # nothing to add: read what others saved, no lock, no file
                total, n = self._read(space)
                with self._lock:
                    self._base[space] = (total, n)
                continue
            try:
                with self._file_lock(space):
                    total, n = self._read(space)
                    if total.size == 0 or total.shape == add[0].shape:
                        total = add[0] if total.size == 0 else total + add[0]
                        n, total = _fade(n + add[1], total)
                        self._write(space, total, n)
            except OSError as exc:
                log.warning("query domain %s not saved (%s): kept in memory", space, exc)
                with self._lock:
                    self._restore(space, add)
                continue
            with self._lock:
                self._base[space] = (total, n)

    # ---------------------------------------------------------------- internals

    def _count(self, space: str) -> float:
        return self._base.get(space, (None, 0.0))[1] + self._pending.get(space, (None, 0.0))[1]

    def _sum(self, space: str) -> F64:
        parts = [
            entry[0]
            for entry in (self._base.get(space), self._pending.get(space))
            if entry is not None and entry[0].size
        ]
        return np.sum(parts, axis=0) if parts else np.zeros(0)

    def _restore(self, space: str, add: tuple[F64, float]) -> None:
        total, n = self._pending.get(space, (np.zeros_like(add[0]), 0.0))
        self._pending[space] = (total + add[0], n + add[1])

    def _ensure_loaded(self, space: str) -> None:
        with self._lock:
            if space in self._loaded:
                return
            self._loaded.add(space)
        total, n = self._read(space)
        with self._lock:
            self._base[space] = (total, n)

    def _path(self, space: str) -> Path:
        return self._folder / f"{space}.npz"

    def _read(self, space: str) -> tuple[F64, float]:
        """The shared totals of ``space``; empty when missing or unreadable."""
        path = self._path(space)
        try:
            with np.load(path, allow_pickle=False) as f:
                total = np.asarray(f["sum"], np.float64)
                n = float(f["count"])
        except FileNotFoundError:
            return np.zeros(0), 0.0
        except (OSError, ValueError, KeyError) as exc:
            log.warning("query domain file %s unreadable (%s): starting it again", path, exc)
            return np.zeros(0), 0.0
        if total.ndim != 1 or not np.isfinite(total).all() or not np.isfinite(n) or n < 0:
            log.warning("query domain file %s is malformed: starting it again", path)
            return np.zeros(0), 0.0
        return total, n

    def _write(self, space: str, total: F64, n: float) -> None:
        buf = io.BytesIO()
        np.savez(buf, sum=total, count=np.float64(n))
        # A lost update after a power cut costs a few searches of a mean: no fsync.
        write_atomic(self._path(space), buf.getvalue(), fsync=False)

    @contextlib.contextmanager
    def _file_lock(self, space: str) -> Iterator[None]:
        """Serialise read-add-write of ``space`` across the processes sharing the data dir."""
        self._folder.mkdir(parents=True, exist_ok=True)
        with open(self._folder / f".{space}.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)


def _fade(n: float, total: F64) -> tuple[float, F64]:
    """Past :data:`MAX_WEIGHT` searches, scale sum and count down together (same mean)."""
    if n <= MAX_WEIGHT:
        return n, total
    scale = MAX_WEIGHT / n
    return MAX_WEIGHT, total * scale
