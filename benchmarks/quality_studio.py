"""Photo -> product search on a studio catalog, through the real pipeline.

``python -m benchmarks.quality_studio [--grocery G] [--queries queries_val.csv]``

Indexes ``catalog_studio.csv`` (one studio photo per product) with ``run_index``
at the default settings: the snapshot takes the studio pipeline
(``facts["pipeline"]``: head-only features, geometric re-ranking). Every query
photo is decoded and embedded once, then searched twice against the same
snapshot in the same run: without the photo (the head-only ranking alone, the
*baseline*) and with it (the default: the short list re-ranked by
``shoplens.indexer.serving.rerank``). Reports product-level Recall@1/5/10 (the
grocery README's protocol) of both and the per-query time of each search,
measured on the same machine in the same run (it is shared: compare the two
columns, not runs).

``--queries catalog_train`` uses the grocery train photos as queries: the dev
set the re-ranking parameters were picked on (never the val queries).
Writes ``benchmarks/results/quality_studio[_<queries>].json`` and ``.md``.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

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
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder


def _queries(grocery: Path, which: str, step: int) -> list[dict[str, str]]:
    if which == "catalog_train":
        rows = [r for r in read_csv(grocery / "catalog.csv") if "/iconic/" not in r["image"]]
    else:
        rows = read_csv(grocery / which)
    return rows[::step]


def _ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {
        "mean": round(1000 * statistics.fmean(s), 2),
        "p50": round(1000 * s[len(s) // 2], 2),
        "p95": round(1000 * s[min(len(s) - 1, int(0.95 * len(s)))], 2),
    }


def run(grocery: Path, data_dir: Path, queries_name: str, step: int) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    embedder = load_embedder(settings)
    report = run_index(settings, grocery / "catalog_studio.csv", embedder=embedder)
    facts = json.loads((settings.snapshots_dir / report.snapshot_id / "facts.json").read_text())
    queries = _queries(grocery, queries_name, step)
    live = LiveIndex.open(settings, embedder.name)
    plain_hits: list[dict[int, bool]] = []
    rerank_hits: list[dict[int, bool]] = []
    plain_s: list[float] = []
    rerank_s: list[float] = []
    embed_s: list[float] = []
    try:
        # The catalog photos' local features were computed when the snapshot
        # loaded; three searches warm the rest (OpenCV, the embedder's session).
        for row in queries[:3]:
            img = decode_image((grocery / row["image"]).read_bytes())
            live.search(embedder.embed([img])[0], max(KS), SearchFilters(), image=img)
        for row in queries:
            data = (grocery / row["image"]).read_bytes()
            t = time.perf_counter()
            img = decode_image(
                data,
                max_pixels=settings.max_image_pixels,
                draft_size=embedder.preprocess_config.resize,
            )
            vec = embedder.embed([img])[0]
            embed_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            plain = live.search(vec, max(KS), SearchFilters())
            plain_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            ranked = live.search(vec, max(KS), SearchFilters(), image=img)
            rerank_s.append(time.perf_counter() - t)
            truth = row["product_id"]
            plain_hits.append(recall_at_k([h.product.product_id for h in plain], truth))
            rerank_hits.append(recall_at_k([h.product.product_id for h in ranked], truth))
    finally:
        live.close()
    return {
        "benchmark": "quality_studio",
        "model": embedder.name,
        "catalog": {"images": report.vectors, "products": report.products},
        "queries": {"file": queries_name, "n": len(queries), "step": step},
        "pipeline": facts.get("pipeline"),
        "adaptation": facts.get("adaptation"),
        "baseline": {"recall": mean_recall(plain_hits), "search_ms": _ms(plain_s)},
        "default": {"recall": mean_recall(rerank_hits), "search_ms": _ms(rerank_s)},
        "decode_embed_ms": _ms(embed_s),
        "machine": machine(),
    }


def markdown(r: dict[str, Any]) -> str:
    b, d = r["baseline"], r["default"]
    rows = []
    for name, x in (("head-only ranking (baseline)", b), ("+ geometric re-ranking (default)", d)):
        rc, ms = x["recall"], x["search_ms"]
        rows.append(
            f"| {name} | {rc['R@1']:.4f} | {rc['R@5']:.4f} | {rc['R@10']:.4f} "
            f"| {ms['mean']} | {ms['p95']} |"
        )
    q = r["queries"]
    table = "\n".join(rows)
    return f"""# Studio catalog: photo -> product search through the real pipeline

Model `{r["model"]}`, catalog `catalog_studio.csv` ({r["catalog"]["images"]} studio photos /
{r["catalog"]["products"]} products), {q["n"]} queries from `{q["file"]}` (every
{q["step"]}th), product-level recall (grocery README protocol). Both rows search the
same snapshot with the same query vectors in one run; *search ms* is
`LiveIndex.search` alone (the re-ranking includes the query photo's local features).
Decode + embed of a query: mean {r["decode_embed_ms"]["mean"]} ms,
p95 {r["decode_embed_ms"]["p95"]} ms.

Snapshot pipeline: `{json.dumps(r["pipeline"])}`.

| pipeline | Recall@1 | Recall@5 | Recall@10 | search ms (mean) | search ms (p95) |
|---|---:|---:|---:|---:|---:|
{table}

Machine: {r["machine"]} (shared by several people: timings vary with its load).
"""


def main() -> None:
    args = studio_parser(__doc__.splitlines()[0]).parse_args()
    run_studio(
        args,
        "quality_studio",
        lambda data_dir: run(args.grocery, data_dir, args.queries, args.step),
        markdown,
    )


if __name__ == "__main__":
    main()
