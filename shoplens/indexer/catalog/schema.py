"""The catalog's tables as versioned migrations (component ``catalog``), on either engine.

On SQLite the file (``catalog.db``) is shared with other parts (the job table,
the AR store), which keep their own tables; on PostgreSQL every store shares
one database. Either way every catalog table is prefixed ``idx_``. The DDL is
written once in SQLite's types and translated for PostgreSQL by
:mod:`shoplens.db.dialect`.

Version 1 is the schema as the release before versioning created it (``IF NOT
EXISTS``: a catalog.db of that release takes it as a no-op and keeps its data);
later versions only add, so replicas of the previous release keep working on an
upgraded database. The word-search index (its tables, triggers and rebuild)
is in :mod:`.text`.
"""

from __future__ import annotations

from shoplens.db import Conn, Database
from shoplens.db.migrations import Migration, migrate
from shoplens.indexer.catalog import text

COMPONENT = "catalog"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idx_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idx_products (
    product_id TEXT PRIMARY KEY,
    title TEXT, category TEXT, description TEXT, url TEXT,
    price REAL, currency TEXT,
    in_stock INTEGER NOT NULL DEFAULT 1,
    attributes TEXT NOT NULL DEFAULT '{}',
    deleted INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_products_seq ON idx_products(seq);
-- rowid is the vector id used in snapshots: stable for the life of the row.
CREATE TABLE IF NOT EXISTS idx_images (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    image_id TEXT NOT NULL,
    product_id TEXT NOT NULL,
    source TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    position INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    seq INTEGER NOT NULL,
    UNIQUE (product_id, image_id)
);
CREATE INDEX IF NOT EXISTS idx_images_seq ON idx_images(seq);
CREATE INDEX IF NOT EXISTS idx_images_image_id ON idx_images(image_id);
CREATE TABLE IF NOT EXISTS idx_embeddings (
    model TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    dim INTEGER NOT NULL,
    vector BLOB NOT NULL,
    written_at REAL,  -- unix time; NULL on rows older than the column
    PRIMARY KEY (model, sha256)
) WITHOUT ROWID;
-- (path, size, mtime) -> sha256, so an unchanged file is not even read again.
CREATE TABLE IF NOT EXISTS idx_sources (
    source TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
) WITHOUT ROWID;
"""


def _embedding_written_at(db: Database, c: Conn) -> None:
    # A catalog.db made before garbage collection lacks the column.
    db.add_column(c, "idx_embeddings", "written_at", "REAL")


MIGRATIONS = (
    Migration(1, "catalog tables", _SCHEMA),
    Migration(2, "embedding written_at", _embedding_written_at),
    Migration(3, "word index", text.build),
)


def create_schema(db: Database) -> tuple[list[str], bool]:
    """Apply the migrations this database lacks, then ready the word index.

    Returns the migrations applied (``catalog:N name``) and whether word search
    is available (False where SQLite lacks FTS5).
    """
    applied = migrate(db, COMPONENT, MIGRATIONS)
    return applied, text.prepare(db)
