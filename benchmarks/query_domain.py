"""A studio catalog as it serves: quality after N unlabelled shopper searches, with
query centring on the shop's own searches (``serving/query_domain.py``).

``python -m benchmarks.query_domain [--grocery G] [--queries Q] [--steps 0,30,100,300]``

Indexes ``catalog_studio.csv`` with ``run_index`` at the default settings (the
studio pipeline). For each N: the query mean is reset, N grocery **train**
photos (a seeded random sample: shoppers of other visits) are searched as a
shop's shoppers would (``LiveIndex.search(..., observe=True)``, the service's
path; no label is used), the mean is saved (``sync``, as the reload loop does),
and the queries are measured on fresh indexes over that data dir: re-ranking
on (the default) and off. N = 0 is the baseline of the same run (no centring).

``--queries catalog_train --step 4`` measures the dev set (every 4th train
photo; the searches are then drawn from the other train photos): the weight and
the minimum count were chosen there, never on val. Writes
``benchmarks/results/query_domain[_<queries>].json`` and ``.md``.
"""

from __future__ import annotations

import random
import shutil
import time
from pathlib import Path
from typing import Any

from PIL import Image

from benchmarks.common import (
    KS,
    machine,
    mean_recall,
    read_csv,
    recall_at_k,
    run_studio,
    studio_parser,
)
from shoplens.config import Settings
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.query_domain import FOLDER
from shoplens.models.base import ImageEmbedder
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder

Photo = tuple[Any, Image.Image, str]  # (model vector, decoded photo, product id)


def _photos(grocery: Path, rows: list[dict[str, str]], embedder: ImageEmbedder) -> list[Photo]:
    out = []
    for r in rows:
        img = decode_image((grocery / r["image"]).read_bytes())
        out.append((embedder.embed([img])[0], img, r["product_id"]))
    return out


def _measure(settings: Settings, model: str, queries: list[Photo]) -> dict[str, Any]:
    live = LiveIndex.open(settings, model)
    try:
        domain = live.query_domain()
        hits, seconds = [], []
        for vec, img, truth in queries:
            t = time.perf_counter()
            ranked = live.search(vec, max(KS), SearchFilters(), image=img)
            seconds.append(time.perf_counter() - t)
            hits.append(recall_at_k([h.product.product_id for h in ranked], truth))
    finally:
        live.close()
    s = sorted(seconds)
    p95 = s[int(0.95 * (len(s) - 1))]
    ms = {"mean": round(1e3 * sum(s) / len(s), 3), "p95": round(1e3 * p95, 3)}
    return {"recall": mean_recall(hits), "search_ms": ms, **domain}


def run(grocery: Path, data_dir: Path, which: str, step: int, steps: list[int]) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    embedder = load_embedder(settings)
    report = run_index(settings, grocery / "catalog_studio.csv", embedder=embedder)
    train = [r for r in read_csv(grocery / "catalog.csv") if "/iconic/" not in r["image"]]
    if which == "catalog_train":
        queries_rows = train[::step]
        pool = [r for i, r in enumerate(train) if i % step]
    else:
        queries_rows = read_csv(grocery / which)[::step]
        pool = train
    searches_rows = random.Random(0).sample(pool, max(steps))
    t0 = time.perf_counter()
    queries = _photos(grocery, queries_rows, embedder)
    searches = _photos(grocery, searches_rows, embedder)
    embed_s = time.perf_counter() - t0
    off = Settings(data_dir=data_dir, rerank="off")
    rows = []
    for n in steps:
        shutil.rmtree(data_dir / FOLDER, ignore_errors=True)
        live = LiveIndex.open(settings, embedder.name)
        try:
            for vec, img, _ in searches[:n]:
                live.search(vec, max(KS), SearchFilters(), image=img, observe=True)
        finally:
            live.close()  # saves the mean, as the service's reload loop does
        rows.append(
            {
                "searches": n,
                "rerank": _measure(settings, embedder.name, queries),
                "plain": _measure(off, embedder.name, queries),
            }
        )
        print(n, rows[-1], flush=True)
    return {
        "benchmark": "query_domain",
        "model": embedder.name,
        "catalog": {"images": report.vectors, "products": report.products},
        "queries": {"file": which, "n": len(queries), "step": step},
        "searches_from": "grocery train photos, random.Random(0).sample"
        + (", not the dev queries" if which == "catalog_train" else ""),
        "embed_seconds": round(embed_s, 1),
        "rows": rows,
        "machine": machine(),
    }


def markdown(r: dict[str, Any]) -> str:
    lines = []
    for row in r["rows"]:
        p, d = row["plain"], row["rerank"]
        lines.append(
            f"| {row['searches']} | {'yes' if d['centring'] else 'no'} "
            f"| {p['recall']['R@1']:.4f} | {p['recall']['R@5']:.4f} | {p['recall']['R@10']:.4f} "
            f"| {d['recall']['R@1']:.4f} | {d['recall']['R@5']:.4f} | {d['recall']['R@10']:.4f} "
            f"| {p['search_ms']['mean']} / {d['search_ms']['mean']} |"
        )
    q = r["queries"]
    table = "\n".join(lines)
    return f"""# Studio catalog as it serves: query centring on the shop's searches

`python -m benchmarks.query_domain`: model `{r["model"]}`, catalog `catalog_studio.csv`
({r["catalog"]["images"]} studio photos / {r["catalog"]["products"]} products),
{q["n"]} queries from `{q["file"]}` (every {q["step"]}th), product-level recall
(grocery README protocol). Before measuring, N unlabelled shopper searches
({r["searches_from"]}) went through `LiveIndex.search(..., observe=True)`; the
row with 0 searches is the baseline of the same run (no centring). *plain*:
`SHOPLENS_RERANK=off`; *default*: with geometric re-ranking. *search ms*:
`LiveIndex.search` alone, mean (the default's includes the query's SIFT).

| searches | centred | plain R@1 | R@5 | R@10 | default R@1 | R@5 | R@10 | ms plain / default |
|---:|---|---:|---:|---:|---:|---:|---:|---:|
{table}

Machine: {r["machine"]}.
"""


def main() -> None:
    ap = studio_parser(__doc__.splitlines()[0])
    ap.add_argument("--steps", default="0,30,100,300", help="searches seen before measuring")
    args = ap.parse_args()
    steps = [int(s) for s in args.steps.split(",")]
    run_studio(
        args,
        "query_domain",
        lambda data_dir: run(args.grocery, data_dir, args.queries, args.step, steps),
        markdown,
    )


if __name__ == "__main__":
    main()
