"""The embedding cache and the source-stat cache.

Embeddings are cached by ``(model, sha256 of the source bytes)``: this is what
makes indexing incremental (unchanged bytes are never embedded again) and
resumable (each batch is committed in one transaction). A vector is never
changed once written for a ``(model, sha256)``. Each row records when it was
written (``written_at``), which is what lets garbage collection tell an orphan
from a row written a moment before the image row that uses it
(:mod:`shoplens.indexer.catalog.collect`).

The source-stat cache maps a local file's ``(path, size, mtime_ns)`` to the
sha256 of its bytes, so an unchanged file is not even read again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from numpy.typing import NDArray

from shoplens.indexer.catalog.connection import CatalogConnection

# Rows written as (source, size, mtime_ns, sha256).
SourceRow = tuple[str, int, int, str]
# SQLite caps the parameters of one statement; sha lists are queried in chunks.
_CHUNK = 500
_PUT_SOURCES = (
    "INSERT INTO idx_sources(source, size, mtime_ns, sha256) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(source) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
    "sha256 = excluded.sha256"
)


def _chunks(shas: Iterable[str]) -> Iterator[list[str]]:
    wanted = list(dict.fromkeys(shas))
    for i in range(0, len(wanted), _CHUNK):
        yield wanted[i : i + _CHUNK]


def embedded_shas(db: CatalogConnection, model: str, shas: Iterable[str]) -> set[str]:
    found: set[str] = set()
    chunks = list(_chunks(shas))
    with db.locked() as c:
        for chunk in chunks:
            marks = ",".join("?" * len(chunk))
            rows = c.execute(
                f"SELECT sha256 FROM idx_embeddings WHERE model = ? AND sha256 IN ({marks})",
                (model, *chunk),
            )
            found.update(r[0] for r in rows)
    return found


def embedded_shas_all(db: CatalogConnection, model: str) -> set[str]:
    with db.locked() as c:
        rows = c.execute("SELECT sha256 FROM idx_embeddings WHERE model = ?", (model,))
        return {r[0] for r in rows}


def count_embeddings(db: CatalogConnection, model: str) -> int:
    with db.locked() as c:
        row = c.execute("SELECT COUNT(*) FROM idx_embeddings WHERE model = ?", (model,)).fetchone()
    return int(row[0])


def put_embeddings(
    db: CatalogConnection,
    model: str,
    items: Sequence[tuple[str, NDArray[np.float32]]],
    sources: Sequence[SourceRow],
) -> None:
    with db.transaction() as c:
        now = time.time()
        c.executemany(
            "INSERT INTO idx_embeddings(model, sha256, dim, vector, written_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(model, sha256) DO UPDATE SET "
            "dim = excluded.dim, vector = excluded.vector, written_at = excluded.written_at",
            [
                (
                    model,
                    sha,
                    int(v.shape[0]),
                    np.ascontiguousarray(v, np.float32).tobytes(),
                    now,
                )
                for sha, v in items
            ],
        )
        c.executemany(_PUT_SOURCES, list(sources))


def get_embeddings(
    db: CatalogConnection, model: str, shas: Sequence[str]
) -> dict[str, NDArray[np.float32]]:
    out: dict[str, NDArray[np.float32]] = {}
    chunks = list(_chunks(shas))
    with db.locked() as c:
        for chunk in chunks:
            marks = ",".join("?" * len(chunk))
            rows = c.execute(
                "SELECT sha256, vector FROM idx_embeddings "
                f"WHERE model = ? AND sha256 IN ({marks})",
                (model, *chunk),
            )
            for sha, blob in rows:
                out[sha] = np.frombuffer(blob, dtype=np.float32).copy()
    return out


def put_sources(db: CatalogConnection, rows: Sequence[SourceRow]) -> None:
    with db.transaction() as c:
        c.executemany(_PUT_SOURCES, list(rows))


def cached_sha(db: CatalogConnection, source: str, size: int, mtime_ns: int) -> str | None:
    with db.locked() as c:
        row = c.execute(
            "SELECT sha256 FROM idx_sources WHERE source = ? AND size = ? AND mtime_ns = ?",
            (source, size, mtime_ns),
        ).fetchone()
    return None if row is None else str(row[0])
