"""Photo -> product search quality on the grocery data, through the real pipeline.

``python -m benchmarks.quality [--data-dir D] [--grocery G] [--model NAME]``

Indexes ``catalog.csv`` with ``run_index`` (cold, then an incremental re-run
that must embed nothing), sends every ``queries_val.csv`` photo through
decode -> embed -> ``LiveIndex.search`` and reports product-level
Recall@1/5/10 (the README's protocol) plus indexing images/s. Writes
``benchmarks/results/quality_baseline.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    DEFAULT_GROCERY,
    KS,
    machine,
    mean_recall,
    read_csv,
    recall_at_k,
    write_results,
)
from shoplens.config import Settings
from shoplens.indexer.build import run_index
from shoplens.indexer.live import LiveIndex
from shoplens.indexer.types import SearchFilters
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder


def run(grocery: Path, data_dir: Path, model: str | None, name: str) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir)
    if model:
        settings = settings.model_copy(update={"model": model})
    t = time.perf_counter()
    embedder = load_embedder(settings)
    load_s = time.perf_counter() - t
    catalog = grocery / "catalog.csv"

    cold = run_index(settings, catalog, embedder=embedder)
    warm = run_index(settings, catalog, embedder=embedder)
    assert warm.indexed == 0, "the incremental re-run embedded images again"

    queries = read_csv(grocery / "queries_val.csv")
    live = LiveIndex.open(settings, embedder.name)
    hits: list[dict[int, bool]] = []
    per_product: dict[str, list[bool]] = {}
    embed_s = search_s = 0.0
    try:
        for row in queries:
            data = (grocery / row["image"]).read_bytes()
            t = time.perf_counter()
            img = decode_image(
                data,
                max_pixels=settings.max_image_pixels,
                draft_size=embedder.preprocess_config.resize,
            )
            vec = embedder.embed([img])[0]
            t2 = time.perf_counter()
            ranked = live.search(vec, max(KS), SearchFilters())
            search_s += time.perf_counter() - t2
            embed_s += t2 - t
            h = recall_at_k([r.product.product_id for r in ranked], row["product_id"])
            hits.append(h)
            per_product.setdefault(row["product_id"], []).append(h[1])
        facts = live.snapshot_facts
    finally:
        live.close()

    n = len(queries)
    worst = sorted(per_product.items(), key=lambda kv: float(np.mean(kv[1])))[:5]
    return {
        "benchmark": name,
        "model": embedder.name,
        "dim": embedder.dim,
        "catalog": {"images": cold.vectors, "products": cold.products},
        "queries": n,
        "recall": mean_recall(hits),
        "indexing": {
            "cold": {
                "indexed": cold.indexed,
                "seconds": cold.seconds,
                "images_per_s": cold.images_per_s,
            },
            "incremental": {
                "unchanged": warm.unchanged,
                "seconds": warm.seconds,
                "images_per_s": warm.images_per_s,
            },
            "model_load_s": round(load_s, 2),
        },
        "query_ms": {
            "decode_embed_mean": round(1000 * embed_s / max(1, n), 2),
            "search_mean": round(1000 * search_s / max(1, n), 3),
        },
        "index": facts.get("index", {}),
        "worst_products_r1": {k: round(float(np.mean(v)), 3) for k, v in worst},
        "settings": {
            "batch_size": settings.batch_size,
            "decode_workers": settings.decode_workers,
            "ort_threads": settings.ort_threads,
        },
        "machine": machine(),
    }


def markdown(r: dict[str, Any]) -> str:
    rec = r["recall"]
    ix = r["indexing"]
    inc = ix["incremental"]
    return f"""# Grocery photo -> product search baseline

Model `{r["model"]}` (dim {r["dim"]}), catalog {r["catalog"]["images"]} images /
{r["catalog"]["products"]} products (`catalog.csv`), {r["queries"]} val queries
(`queries_val.csv`), product-level recall (README protocol), through the real
pipeline (`run_index` -> snapshot -> `LiveIndex.search`).

| metric | value |
|---|---:|
| Recall@1 | {rec["R@1"]:.4f} |
| Recall@5 | {rec["R@5"]:.4f} |
| Recall@10 | {rec["R@10"]:.4f} |
| indexing, cold (images/s) | {ix["cold"]["images_per_s"]} ({ix["cold"]["seconds"]} s) |
| indexing, incremental re-run (images/s) | {inc["images_per_s"]} ({inc["seconds"]} s) |
| query decode+embed (ms, mean) | {r["query_ms"]["decode_embed_mean"]} |
| query search (ms, mean) | {r["query_ms"]["search_mean"]} |

Index: `{r["index"].get("type")}`. Settings: {r["settings"]}. Machine: {r["machine"]}.
Timings are on a shared machine and vary with its load.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--model", default=None)
    ap.add_argument("--name", default="quality_baseline")
    args = ap.parse_args()
    if not (args.grocery / "catalog.csv").is_file():
        raise SystemExit(f"no grocery data at {args.grocery} (use --grocery)")
    tmp = None
    data_dir = args.data_dir
    if data_dir is None:
        tmp = tempfile.mkdtemp(prefix="shoplens-quality-")
        data_dir = Path(tmp)
    try:
        result = run(args.grocery, data_dir, args.model, args.name)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    j, m = write_results(args.name, result, markdown(result))
    print(markdown(result))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
