"""Word search over the catalog's text: one index entry per live product.

Each entry holds the product's title, category, attribute values and
description, kept current in the very transaction that writes the product
row, on either engine:

- triggers on ``idx_products`` note every product id an insert, update or
  delete touches in ``idx_text_dirty``, so no writer can forget to (a PUT or
  DELETE through the service, a re-index run's commit, a prune, a raw write);
- :func:`sync` re-indexes the noted products and clears the notes; the catalog
  connection runs it at the end of every write transaction, before COMMIT.

SQLite: an FTS5 table (this module). PostgreSQL: a ``tsvector`` per product
with a GIN index (:mod:`.text_pg`). The store asks :func:`ranked` and
:func:`matching` with the query's words; each engine builds its own query from
them, so user input never reaches either query syntax: :func:`words` keeps
letters and digits only (``"``, ``*``, ``NEAR``, ``(``, ``&``, ``:`` are just text).

Why not write the FTS rows from the triggers themselves: FTS5 flushes its
pending rows at every statement savepoint, which a trigger opens per row, so
indexing from triggers made catalog writes several times slower than one batch
per transaction (``benchmarks/words.py``). A plan worked out in a savepoint and
rolled back (``plan.py``) rolls its notes back with it.

FTS rows are keyed by ``idx_text_ids.tid``, an ``INTEGER PRIMARY KEY`` per
product id: the implicit rowid of ``idx_products`` (a TEXT primary key) may be
renumbered by a ``VACUUM``, a tid never is.

Tokens: ``unicode61 remove_diacritics 2`` (``creme`` finds "Crème", case and
punctuation ignored) under ``porter`` (``bananas`` finds "Banana"); PostgreSQL
gets the same from :func:`fold` and its ``english`` stemmer beside ``simple``.
"""

from __future__ import annotations

import logging
import re
import sqlite3
import unicodedata
from typing import Any

from shoplens.db import Conn, Database
from shoplens.errors import BadParameter
from shoplens.indexer.catalog import text_pg

log = logging.getLogger(__name__)

# Bump when the tables, the tokenizer or the triggers change: the next open rebuilds.
VERSION = "1"
_META_KEY = "text_index"
MAX_WORDS = 12
# Column weights for bm25, in table order: a title match outranks a category
# match, which outranks an attribute value, which outranks the description.
WEIGHTS = (10.0, 5.0, 3.0, 1.0)

_NOTE = "INSERT OR IGNORE INTO idx_text_dirty(product_id) VALUES ({row}.product_id);"
_DDL = f"""
CREATE TABLE IF NOT EXISTS idx_text_ids (
    tid INTEGER PRIMARY KEY,
    product_id TEXT NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS idx_text_dirty (product_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE VIRTUAL TABLE idx_text USING fts5(
    title, category, attributes, description,
    tokenize = 'porter unicode61 remove_diacritics 2',
    prefix = '2 3'
);
INSERT INTO idx_text(idx_text, rank) VALUES ('rank', 'bm25({", ".join(map(str, WEIGHTS))})');
CREATE TRIGGER idx_text_insert AFTER INSERT ON idx_products BEGIN
    {_NOTE.format(row="new")}
END;
CREATE TRIGGER idx_text_update
AFTER UPDATE OF product_id, title, category, description, attributes, deleted ON idx_products
BEGIN
    {_NOTE.format(row="old")}
    {_NOTE.format(row="new")}
END;
CREATE TRIGGER idx_text_delete AFTER DELETE ON idx_products BEGIN
    {_NOTE.format(row="old")}
END;
INSERT OR IGNORE INTO idx_text_dirty(product_id) SELECT product_id FROM idx_products;
"""
_DROP = """
DROP TRIGGER IF EXISTS idx_text_insert;
DROP TRIGGER IF EXISTS idx_text_update;
DROP TRIGGER IF EXISTS idx_text_delete;
DROP TABLE IF EXISTS idx_text;
"""
_INDEX_NOTED = """
INSERT INTO idx_text(rowid, title, category, attributes, description)
SELECT t.tid, p.title, p.category,
       (SELECT group_concat(value, ' ') FROM json_each(p.attributes)), p.description
FROM idx_text_dirty d
JOIN idx_products p ON p.product_id = d.product_id
JOIN idx_text_ids t ON t.product_id = d.product_id
WHERE p.deleted = 0
"""


def _version(c: Conn) -> str | None:
    row = c.execute("SELECT value FROM idx_meta WHERE key = ?", (_META_KEY,)).fetchone()
    return None if row is None else str(row[0])


def build(db: Database, c: Conn) -> None:
    """Create the index, its triggers and notes, and index every product, inside
    the caller's write transaction: the catalog's migration to word search.

    On SQLite it is (re)built only when :data:`VERSION` changed; a SQLite without
    FTS5 logs a warning and leaves word search unavailable
    (``text_search_unavailable``), the rest of the catalog works.
    """
    if db.is_postgres:
        text_pg.build(db, c)
        return
    if _version(c) == VERSION:
        return
    c.execute("SAVEPOINT text_index")
    try:
        for statement in _statements(_DROP + _DDL):
            c.execute(statement)
        sync(db, c)
        c.execute(
            "INSERT INTO idx_meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (_META_KEY, VERSION),
        )
    except sqlite3.OperationalError as exc:
        c.execute("ROLLBACK TO text_index")
        c.execute("RELEASE text_index")
        if "fts5" not in str(exc):
            raise
        log.warning("this SQLite has no FTS5: word search is unavailable (%s)", exc)
        return
    c.execute("RELEASE text_index")


def prepare(db: Database) -> bool:
    """At open, after the migrations: rebuild an index of an older :data:`VERSION`
    (SQLite), and index products noted but not indexed yet (written by a raw
    writer). Whether word search is available."""
    with db.locked() as c:
        current = db.is_postgres or _version(c) == VERSION
    if not current:
        with db.transaction() as c:
            # build() looks at the version again under the write lock: another
            # process may have rebuilt the index meanwhile.
            build(db, c)
    with db.locked() as c:
        available = "idx_text_dirty" in db.tables(c) and (db.is_postgres or _version(c) is not None)
        noted = available and c.execute("SELECT 1 FROM idx_text_dirty LIMIT 1").fetchone()
    if noted:
        with db.transaction() as c:
            sync(db, c)
    return bool(available)


def sync(db: Database, c: Conn) -> int:
    """Re-index the products noted since the last sync (inside the caller's write
    transaction) and clear the notes; how many were noted."""
    if db.is_postgres:
        return text_pg.sync(c)
    noted = [r[0] for r in c.execute("SELECT product_id FROM idx_text_dirty")]
    if not noted:
        return 0
    c.execute(
        "INSERT OR IGNORE INTO idx_text_ids(product_id) SELECT product_id FROM idx_text_dirty"
    )
    c.execute(
        "DELETE FROM idx_text WHERE rowid IN (SELECT t.tid FROM idx_text_dirty d "
        "JOIN idx_text_ids t ON t.product_id = d.product_id)"
    )
    c.execute(_INDEX_NOTED)
    c.execute("DELETE FROM idx_text_dirty")
    return len(noted)


def _statements(script: str) -> list[str]:
    """Split a script into statements (trigger bodies kept whole) for ``execute``,
    which, unlike ``executescript``, stays inside the open transaction."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            if current.strip():
                out.append(current.strip())
            current = ""
    return out


def words(text: str) -> list[str]:
    """The distinct words of a query (letters and digits; at most :data:`MAX_WORDS`)."""
    found = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text))
    unique = list(dict.fromkeys(w.casefold() for w in found))
    return unique[:MAX_WORDS]


def match_expression(terms: list[str], *, every: bool) -> str:
    """An FTS5 query: every word (AND) or any word (OR), each quoted, and matched
    as a prefix from two characters on (``ban`` finds "Bananas")."""
    quoted = [f'"{w}"*' if len(w) >= 2 else f'"{w}"' for w in terms]
    return (" AND " if every else " OR ").join(quoted)


def ranked(db: Database, terms: list[str], every: bool, limit: int) -> list[tuple[str, float]]:
    """``(product_id, rank)`` of the best ``limit`` live products matching every
    word (or any word), best first: bm25 as FTS5 gives it on SQLite, the
    negated weighted cover density on PostgreSQL (both negative, lower is better)."""
    if db.is_postgres:
        with db.locked() as c:
            return text_pg.ranked(c, terms, every, limit)
    rows = _query(
        db,
        "SELECT t.product_id, idx_text.rank FROM idx_text "
        "JOIN idx_text_ids t ON t.tid = idx_text.rowid "
        "WHERE idx_text MATCH ? ORDER BY idx_text.rank LIMIT ?",
        (match_expression(terms, every=every), limit),
    )
    return [(str(r[0]), float(r[1])) for r in rows]


def matching(db: Database, terms: list[str], every: bool) -> set[str]:
    """Every live product matching, unranked (what a refined photo search is restricted to)."""
    if db.is_postgres:
        with db.locked() as c:
            return text_pg.matching(c, terms, every)
    rows = _query(
        db,
        "SELECT t.product_id FROM idx_text JOIN idx_text_ids t ON t.tid = idx_text.rowid "
        "WHERE idx_text MATCH ?",
        (match_expression(terms, every=every),),
    )
    return {str(r[0]) for r in rows}


def _query(db: Database, sql: str, args: tuple[Any, ...]) -> list[Any]:
    with db.locked() as c:
        try:
            return c.execute(sql, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "idx_text" not in str(exc) and "fts5" not in str(exc):
                raise
            raise BadParameter(
                f"word search is unavailable: the catalog database has no text index ({exc}); "
                "this Python's SQLite lacks FTS5",
                code="text_search_unavailable",
            ) from None
