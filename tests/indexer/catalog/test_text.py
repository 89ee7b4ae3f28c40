"""The catalog's word index (``shoplens.indexer.catalog.text``) on a real SQLite file
and (``target``) on a real PostgreSQL database: kept by triggers through every
kind of write, built for an older database, unharmed by VACUUM, and never handed
query syntax from user input."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from shoplens.indexer.catalog.schema import _SCHEMA
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.text import match_expression, words
from shoplens.indexer.catalog.types import NewImage, ProductRecord


def product(pid: str, title: str, **extra: object) -> tuple[ProductRecord, list[NewImage], bool]:
    record = ProductRecord(pid, title=title, **extra)  # type: ignore[arg-type]
    return record, [NewImage(f"{pid}.jpg", pid.encode().hex().ljust(64, "0")[:64])], True


def find(store: CatalogStore, q: str, *, every: bool = True) -> list[str]:
    return [pid for pid, _ in store.text_ranked(words(q), 100, every=every)]


def test_triggers_follow_upserts_deletes_and_revivals(target: Path | str) -> None:
    with CatalogStore(target) as store:
        store.upsert_products(
            [
                product("a", "Wombat teapot", category="Teaware", attributes={"glaze": "cobalt"}),
                product("b", "Kettle", description="a wombat on the lid"),
            ]
        )
        assert find(store, "wombat") == ["a", "b"]  # the title before the description
        assert find(store, "cobalt") == ["a"] and find(store, "teaware") == ["a"]
        store.upsert_products([product("a", "Platypus teapot")])
        assert find(store, "wombat") == ["b"] and find(store, "platypus") == ["a"]
        assert find(store, "cobalt") == []
        store.delete_products(["b"])
        assert find(store, "wombat") == []
        store.upsert_products([product("b", "Kettle", description="a wombat on the lid")])
        assert find(store, "wombat") == ["b"]  # a deleted product that comes back


def test_a_plan_is_invisible_until_committed(target: Path | str) -> None:
    with CatalogStore(target) as store:
        store.upsert_products([product("a", "Wombat teapot"), product("b", "Quokka mug")])
        plan = store.plan_catalog([product("a", "Echidna teapot")], prune_keep={"a"})
        # Worked out in a savepoint and rolled back: nothing of it is searchable yet.
        assert find(store, "echidna") == [] and find(store, "quokka") == ["b"]
        store.commit_plan(plan)
        assert find(store, "echidna") == ["a"]
        assert find(store, "wombat") == [] and find(store, "quokka") == []  # pruned


def test_an_older_database_gets_its_index_on_open(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    old = sqlite3.connect(db)  # the catalog as it was before the word index
    old.executescript(_SCHEMA)
    old.executemany(
        "INSERT INTO idx_products(product_id, title, category, attributes, deleted, seq) "
        "VALUES (?, ?, ?, ?, ?, 1)",
        [
            ("a", "Wombat teapot", "Teaware", '{"glaze": "cobalt"}', 0),
            ("b", "Wombat kettle", "Teaware", "{}", 1),  # deleted: stays out
        ],
    )
    old.commit()
    old.close()
    with CatalogStore(db) as store:
        assert find(store, "wombat") == ["a"] and find(store, "cobalt") == ["a"]
        store.upsert_products([product("c", "Wombat cup")])
        assert sorted(find(store, "wombat")) == ["a", "c"]
    with CatalogStore(db) as store:  # opened again: built once, not twice
        assert sorted(find(store, "wombat")) == ["a", "c"]


def test_rows_removed_outright_and_vacuum(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with CatalogStore(db) as store:
        store.upsert_products([product(f"p{i:03d}", f"Thing {i}") for i in range(50)])
    c = sqlite3.connect(db, isolation_level=None)
    # Rows removed outright (an operator's clean-up; the service only marks them
    # deleted) leave the index too; SQLite documents that VACUUM may then renumber
    # the rowids of idx_products, which the index therefore does not key on.
    c.execute(
        f"DELETE FROM idx_products WHERE product_id IN ({','.join('?' * 25)})",
        [f"p{i:03d}" for i in range(0, 50, 2)],
    )
    c.execute("VACUUM")
    c.close()
    with CatalogStore(db) as store:
        store.upsert_products([product("p001", "Renamed one")])
        assert find(store, "renamed") == ["p001"]
        assert find(store, "thing 1") == []  # p001 no longer says it
        assert sorted(find(store, "thing 3")) == ["p003"]
        assert len(find(store, "thing")) == 24


@pytest.mark.parametrize(
    "q",
    [
        '"',
        '"a',
        "*",
        "a*",
        "NEAR(a b)",
        "a OR",
        "AND",
        "NOT",
        "x:y",
        "^a",
        "-a",
        "(",
        ")",
        "'",
        "\0",
        "a & b | !c",
        "a:*",
        "<->",
    ],
)
def test_user_input_never_reaches_the_query_syntax(target: Path | str, q: str) -> None:
    with CatalogStore(target) as store:
        store.upsert_products([product("a", "And or not near")])
        terms = words(q)
        if terms:
            for every in (True, False):
                store.text_ranked(terms, 10, every=every)
                store.text_matching(terms, every=every)


def test_words() -> None:
    assert words("  Crème  BRÛLÉE, crème! ") == ["crème", "brûlée"]
    assert words("t-shirt_xl") == ["t", "shirt", "xl"]
    assert words("***") == []
    assert len(words(" ".join(f"w{i}" for i in range(40)))) == 12
    assert match_expression(["ban", "a"], every=True) == '"ban"* AND "a"'
    assert match_expression(["ban", "a"], every=False) == '"ban"* OR "a"'


def test_a_raw_write_is_indexed_by_the_next_write_or_open(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    raw = "INSERT INTO idx_products(product_id, title, seq) VALUES (?, ?, 1)"
    with CatalogStore(db) as store:
        with sqlite3.connect(db) as c:  # not through the store: the trigger notes it
            c.execute(raw, ("r1", "Wombat stool"))
        assert find(store, "wombat") == []  # noted, not indexed yet
        store.upsert_products([product("a", "Quokka mug")])  # any catalog write syncs
        assert find(store, "wombat") == ["r1"]
        with sqlite3.connect(db) as c:
            c.execute(raw, ("r2", "Wombat bench"))
    with CatalogStore(db) as store:  # opening syncs what is noted
        assert sorted(find(store, "wombat")) == ["r1", "r2"]


def test_accents_case_stems_and_prefixes(target: Path | str) -> None:
    with CatalogStore(target) as store:
        store.upsert_products(
            [
                product("a", "Crème Brûlée dish"),
                product("b", "Banana bowl", attributes={"colour": "Écru"}),
                product("c", "Kettle", category="Teaware"),
            ]
        )
        assert find(store, "creme brulee") == ["a"] and find(store, "CRÈME") == ["a"]
        assert find(store, "bananas") == ["b"] and find(store, "ban") == ["b"]
        assert find(store, "ecru") == ["b"] and find(store, "tea") == ["c"]
        # Every word first, then (a second tier) any word.
        assert find(store, "banana kettle") == []
        assert sorted(find(store, "banana kettle", every=False)) == ["b", "c"]
        assert store.text_matching(words("dish crème")) == {"a"}
        ranks = store.text_ranked(words("kettle"), 10)
        assert ranks[0][0] == "c" and ranks[0][1] < 0  # negative: lower is better


def test_a_raw_write_on_postgres_is_indexed_by_the_next_write_or_open(pg_url: str) -> None:
    import psycopg

    raw = "INSERT INTO idx_products(product_id, title, seq) VALUES (%s, %s, 1)"
    with CatalogStore(pg_url) as store:
        with psycopg.connect(pg_url, autocommit=True) as c:  # the trigger notes it
            c.execute(raw, ("r1", "Wombat stool"))
        assert find(store, "wombat") == []
        store.upsert_products([product("a", "Quokka mug")])
        assert find(store, "wombat") == ["r1"]
        with psycopg.connect(pg_url, autocommit=True) as c:
            c.execute(raw, ("r2", "Wombat bench"))
            c.execute("DELETE FROM idx_products WHERE product_id = 'a'")  # removed outright
    with CatalogStore(pg_url) as store:
        assert sorted(find(store, "wombat")) == ["r1", "r2"] and find(store, "quokka") == []
