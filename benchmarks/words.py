"""Word search: what the FTS5 index costs catalog writes, how long its migration and
its queries take, on a generated catalog.

``python -m benchmarks.words [--products N] [--work DIR]``

Writes N products (titles, categories, an attribute, a description drawn from a
fixed vocabulary) in batches of 1,000 through ``CatalogStore.upsert_products``,
twice into fresh databases: with the word index (triggers note the products a
write touches, the transaction indexes them before it commits), and, as the
baseline in the same run, with its triggers dropped. Then
times the migration (building the index for the baseline database, as opening
an older catalog does), and the two queries the service runs: the ranked top
matches (``GET /v1/search?q=``) and every match (``POST /v1/search?q=``).

Writes ``benchmarks/results/words.json`` and ``words.md``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.common import machine, write_results
from shoplens.indexer.catalog import text
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.catalog.types import NewImage, ProductRecord

NOUNS = [
    "mug",
    "kettle",
    "teapot",
    "lamp",
    "chair",
    "table",
    "shirt",
    "shoe",
    "sock",
    "scarf",
    "hat",
    "bag",
    "bottle",
    "cup",
    "bowl",
]
ADJECTIVES = [
    "red",
    "blue",
    "green",
    "black",
    "white",
    "wooden",
    "glass",
    "steel",
    "cotton",
    "wool",
    "linen",
    "small",
    "large",
]
BRANDS = ["acme", "nordic", "fjord", "alpine", "coastal", "urban"]
QUERIES = ["mug", "ket", "red mug", "wooden table lamp", "acme", "zzzz", "glass bottle blue"]


def catalog(n: int, seed: int = 0) -> list[tuple[ProductRecord, list[NewImage], bool]]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        adj, noun = rnd.choice(ADJECTIVES), rnd.choice(NOUNS)
        record = ProductRecord(
            f"p{i:07d}",
            title=f"{adj.title()} {noun} {i}",
            category=noun.title(),
            description=" ".join(rnd.choices(ADJECTIVES + NOUNS, k=12)),
            attributes={"brand": rnd.choice(BRANDS)},
        )
        out.append((record, [NewImage(f"{i}.jpg", f"{i:064x}")], True))
    return out


def write(db: Path, products: list[Any], *, with_index: bool) -> float:
    with CatalogStore(db) as store:
        if not with_index:
            c = sqlite3.connect(db, isolation_level=None)
            for name in ("idx_text_insert", "idx_text_update", "idx_text_delete"):
                c.execute(f"DROP TRIGGER {name}")
            c.close()
        started = time.perf_counter()
        for i in range(0, len(products), 1000):
            store.upsert_products(products[i : i + 1000])
        return time.perf_counter() - started


def timed(fn: Any, repeat: int = 20) -> dict[str, float]:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=50_000)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="shoplens-words-"))
    work.mkdir(parents=True, exist_ok=True)
    products = catalog(args.products)

    plain_s = write(work / "plain.sqlite", products, with_index=False)
    indexed_s = write(work / "indexed.sqlite", products, with_index=True)

    # Migration: the plain database is an "older" catalog; opening it builds the index.
    c = sqlite3.connect(work / "plain.sqlite", isolation_level=None)
    c.execute("DELETE FROM idx_meta WHERE key = 'text_index'")
    c.close()
    started = time.perf_counter()
    CatalogStore(work / "plain.sqlite").close()
    migrate_s = time.perf_counter() - started

    queries: dict[str, Any] = {}
    with CatalogStore(work / "indexed.sqlite") as store:
        for q in QUERIES:
            terms = text.words(q)
            queries[q] = {
                "matches_every": len(store.text_matching(terms, every=True)),
                "matches_some": len(store.text_matching(terms, every=False)),
                "top_64": timed(lambda t=terms: store.text_ranked(t, 64)),
                "all_matches": timed(lambda t=terms: store.text_matching(t)),
            }
    sizes = {p.name: p.stat().st_size for p in work.glob("*.sqlite")}
    data = {
        "machine": machine(),
        "products": args.products,
        "write_s": {"with_word_index": round(indexed_s, 3), "baseline": round(plain_s, 3)},
        "write_overhead": round(indexed_s / plain_s, 3),
        "migration_s": round(migrate_s, 3),
        "db_bytes": sizes,
        "queries": queries,
    }
    rows = "\n".join(
        f"| `{q}` | {v['matches_every']} / {v['matches_some']} | {v['top_64']['p50_ms']} "
        f"| {v['all_matches']['p50_ms']} |"
        for q, v in queries.items()
    )
    md = f"""# Word search (SQLite FTS5)

{args.products:,} generated products, batches of 1,000 through `CatalogStore.upsert_products`;
{data["machine"]["cpus"]} CPUs, Python {data["machine"]["python"]}, {data["machine"]["at"]}.

| | seconds |
|---|---|
| writes with the word index (noted by triggers, indexed per transaction) | {indexed_s:.2f} |
| writes without it (baseline, same run) | {plain_s:.2f} |
| overhead | x{indexed_s / plain_s:.2f} |
| migration: building the index for the existing catalog | {migrate_s:.2f} |

Database size: {sizes.get("indexed.sqlite", 0) / 1e6:.1f} MB with the index.

| query | products matching every / some word | top 64, p50 ms | every match, p50 ms |
|---|---|---|---|
{rows}
"""
    write_results("words", data, md)
    print(md)
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
