"""What garbage collection (``shoplens gc``, :mod:`shoplens.indexer.ops.gc`) asks
the catalog: the sha256 live image rows use, the embedding rows per sha256 with
their newest write, and the deletion of orphans that re-checks both.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shoplens.indexer.catalog.connection import CatalogConnection


@dataclass(frozen=True)
class EmbeddingStat:
    """The embedding rows of one sha256 (all models), for garbage collection."""

    rows: int
    bytes: int
    written_at: float  # the newest row's; 0 for rows older than the column


def live_shas(db: CatalogConnection) -> set[str]:
    with db.locked() as c:
        rows = c.execute("SELECT DISTINCT sha256 FROM idx_images WHERE deleted = 0")
        return {r[0] for r in rows}


def embedding_stats(db: CatalogConnection) -> dict[str, EmbeddingStat]:
    with db.locked() as c:
        rows = c.execute(
            "SELECT sha256, COUNT(*), SUM(LENGTH(vector)), MAX(COALESCE(written_at, 0)) "
            "FROM idx_embeddings GROUP BY sha256"
        )
        return {r[0]: EmbeddingStat(int(r[1]), int(r[2]), float(r[3])) for r in rows}


def collect(
    db: CatalogConnection,
    shas: Sequence[str],
    *,
    written_before: float,
    remove_files: Callable[[list[str]], list[str]],
) -> tuple[list[str], int, int]:
    """In one write transaction, so no image row can be committed meanwhile:
    of ``shas``, those no live image row uses *now* and whose every embedding
    was written before ``written_before`` go to ``remove_files`` (which deletes
    their photos under the same write lock and returns the shas it collected);
    their embedding and source-cache rows are then deleted. A writer that
    embedded one of them after ``written_before`` (a PUT of the same bytes)
    keeps it; one committing an image row waits for this transaction, then
    sees what it left.
    """
    wanted = list(dict.fromkeys(shas))
    if not wanted:
        return [], 0, 0
    marks = ",".join("?" * len(wanted))
    with db.transaction() as c:
        used = {
            r[0]
            for r in c.execute(
                f"SELECT sha256 FROM idx_images WHERE deleted = 0 AND sha256 IN ({marks})",
                wanted,
            )
        }
        fresh = {
            r[0]
            for r in c.execute(
                f"SELECT sha256 FROM idx_embeddings WHERE sha256 IN ({marks}) AND written_at >= ?",
                (*wanted, written_before),
            )
        }
        doomed = remove_files([s for s in wanted if s not in used and s not in fresh])
        if not doomed:
            return [], 0, 0
        marks = ",".join("?" * len(doomed))
        n, size = c.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(vector)), 0) FROM idx_embeddings "
            f"WHERE sha256 IN ({marks})",
            doomed,
        ).fetchone()
        c.execute(f"DELETE FROM idx_embeddings WHERE sha256 IN ({marks})", doomed)
        c.execute(f"DELETE FROM idx_sources WHERE sha256 IN ({marks})", doomed)
    return doomed, int(n), int(size)
