"""The catalog's tables, and the columns added since, in one SQLite file.

The file is shared with other parts (the job table, the AR store), which keep
their own tables; every catalog table is prefixed ``idx_``. The word-search
index (``idx_text``, its triggers and its migration) is in :mod:`.text`.
"""

from __future__ import annotations

import sqlite3

from shoplens.indexer.catalog.text import ensure_text_index

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


def create_schema(c: sqlite3.Connection) -> bool:
    """Create what is missing: the tables of a new file, the columns an older one lacks.

    Returns whether the word index exists (False where SQLite lacks FTS5).
    """
    c.executescript(_SCHEMA)
    _add_column(c, "idx_embeddings", "written_at", "REAL")
    return ensure_text_index(c)  # after the products table it is filled from


def _add_column(c: sqlite3.Connection, table: str, column: str, decl: str) -> None:
    """Add a column an older database lacks (another process may add it first)."""
    if any(r[1] == column for r in c.execute(f"PRAGMA table_info({table})")):
        return
    try:
        c.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    except sqlite3.OperationalError:
        if not any(r[1] == column for r in c.execute(f"PRAGMA table_info({table})")):
            raise
