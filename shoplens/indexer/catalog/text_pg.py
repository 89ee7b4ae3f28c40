"""Word search on PostgreSQL: a ``tsvector`` per live product in ``idx_text_doc``
(GIN-indexed), the products to re-index noted by a trigger in ``idx_text_dirty``
exactly as on SQLite (:mod:`.text` says why notes, then one sync per transaction).

PostgreSQL's own parsers do the tokenizing; the two things SQLite's FTS5
tokenizer did besides are done here: accents are stripped and case folded in
Python (:func:`fold`, on the document and on the query alike, so ``creme``
finds "Crème" without the ``unaccent`` extension, which a managed database may
not offer), and every text goes through both the ``simple`` configuration
(every word, stop words included) and the ``english`` one (Porter-like stems:
``bananas`` finds "Banana"). Weights A-D rank a title match over a category,
attribute value and description match, as bm25's column weights do on SQLite.

Queries are built from :func:`.text.words` (letters and digits only), each
word a ``to_tsquery`` argument passed as a parameter, matched as a prefix from
two characters on: nothing a shopper types reaches the tsquery syntax.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Sequence
from typing import Any

from shoplens.db import Conn, Database

_DDL = """
CREATE TABLE IF NOT EXISTS idx_text_dirty (product_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS idx_text_doc (product_id TEXT PRIMARY KEY, doc TSVECTOR NOT NULL);
CREATE INDEX IF NOT EXISTS idx_text_doc_gin ON idx_text_doc USING GIN (doc);
CREATE OR REPLACE FUNCTION idx_text_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO idx_text_dirty(product_id) VALUES (OLD.product_id) ON CONFLICT DO NOTHING;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO idx_text_dirty(product_id) VALUES (NEW.product_id) ON CONFLICT DO NOTHING;
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS idx_text_note ON idx_products;
CREATE TRIGGER idx_text_note
AFTER INSERT OR DELETE
OR UPDATE OF product_id, title, category, description, attributes, deleted ON idx_products
FOR EACH ROW EXECUTE FUNCTION idx_text_note();
INSERT INTO idx_text_dirty(product_id) SELECT product_id FROM idx_products
ON CONFLICT DO NOTHING;
"""
# ts_rank_cd's weights, in its order D, C, B, A: description, attribute values,
# category, title (SQLite's bm25 weights 1, 3, 5, 10, scaled into [0, 1]).
_WEIGHTS = "'{0.1, 0.3, 0.5, 1.0}'"
# SQLite's bm25 of a good match is a few units; scaled alike, so the service's
# word scores (shoplens.indexer.serving.query) spread the same way.
_RANK_SCALE = 10.0


def _field(weight: str) -> str:
    return f"setweight(to_tsvector('simple', ?) || to_tsvector('english', ?), '{weight}')"


_INSERT_DOC = (
    "INSERT INTO idx_text_doc(product_id, doc) VALUES (?, "
    + " || ".join(_field(w) for w in "ABCD")
    + ")"
)


def fold(text: str) -> str:
    """Case folded, accents stripped (``Crème`` -> ``creme``), as SQLite's
    ``unicode61 remove_diacritics 2`` tokenizer sees words."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def build(db: Database, c: Conn) -> None:
    """The tables, the trigger and a first sync of every product (a migration)."""
    db.run_script(c, _DDL)
    sync(c)


def _attribute_values(attributes: str) -> str:
    try:
        values = json.loads(attributes or "{}")
    except ValueError:
        return ""
    return " ".join(str(v) for v in values.values()) if isinstance(values, dict) else ""


def sync(c: Conn) -> int:
    """Re-index the noted products (inside the caller's write transaction)."""
    rows = c.execute(
        "SELECT d.product_id, p.product_id, p.title, p.category, p.attributes, p.description "
        "FROM idx_text_dirty d LEFT JOIN idx_products p "
        "ON p.product_id = d.product_id AND p.deleted = 0"
    ).fetchall()
    if not rows:
        return 0
    c.execute(
        "DELETE FROM idx_text_doc WHERE product_id IN (SELECT product_id FROM idx_text_dirty)"
    )
    docs: list[tuple[Any, ...]] = []
    for noted, live, title, category, attributes, description in rows:
        if live is None:
            continue  # deleted (or removed outright): out of the index
        texts = [fold(t or "") for t in (title, category, _attribute_values(attributes))]
        texts.append(fold(description or ""))
        docs.append((noted, *(t for t in texts for _ in range(2))))
    if docs:
        c.executemany(_INSERT_DOC, docs)
    c.execute("DELETE FROM idx_text_dirty")
    return len(rows)


def _query(terms: Sequence[str], every: bool) -> tuple[str, list[str]]:
    """A tsquery expression with its parameters: each word in both configurations."""
    parts: list[str] = []
    params: list[str] = []
    for term in terms:
        word = fold(term)
        pattern = f"{word}:*" if len(word) >= 2 else word
        parts.append("(to_tsquery('simple', ?) || to_tsquery('english', ?))")
        params += [pattern, pattern]
    return (" && " if every else " || ").join(parts), params


def ranked(c: Conn, terms: Sequence[str], every: bool, limit: int) -> list[tuple[str, float]]:
    if not terms:
        return []
    expr, params = _query(terms, every)
    rows = c.execute(
        f"SELECT product_id, -ts_rank_cd({_WEIGHTS}, doc, q) * {_RANK_SCALE} AS r "
        f"FROM idx_text_doc, (SELECT {expr} AS q) query WHERE doc @@ q "
        "ORDER BY r, product_id LIMIT ?",
        (*params, limit),
    ).fetchall()
    return [(str(r[0]), float(r[1])) for r in rows]


def matching(c: Conn, terms: Sequence[str], every: bool) -> set[str]:
    if not terms:
        return set()
    expr, params = _query(terms, every)
    rows = c.execute(
        f"SELECT product_id FROM idx_text_doc, (SELECT {expr} AS q) query WHERE doc @@ q",
        params,
    ).fetchall()
    return {str(r[0]) for r in rows}
