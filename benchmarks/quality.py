"""Photo -> product search quality on the grocery data, through the real pipeline.

``python -m benchmarks.quality [--data-dir D] [--grocery G] [--model NAME]``

Indexes ``catalog.csv`` with ``run_index`` and ``adaptation="none"`` (cold,
then an incremental re-run that must embed nothing): the *baseline*. Then a
second incremental run with the default ``adaptation="lda"`` (embeds nothing,
fits the catalog adaptation into the new snapshot): the *default* pipeline.
Every ``queries_val.csv`` photo goes through decode -> embed (once) ->
``LiveIndex.search`` against both snapshots; reports product-level
Recall@1/5/10 (the README's protocol) of each, their ratio, and indexing
images/s. Writes ``benchmarks/results/quality_default.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
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
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder


def evaluate(
    settings: Settings, model: str, queries: list[dict[str, str]], vecs: list[Any]
) -> dict[str, Any]:
    """Recall of the published snapshot for pre-embedded query vectors."""
    live = LiveIndex.open(settings, model)
    hits: list[dict[int, bool]] = []
    per_product: dict[str, list[bool]] = {}
    search_s = 0.0
    try:
        for row, vec in zip(queries, vecs, strict=True):
            t = time.perf_counter()
            ranked = live.search(vec, max(KS), SearchFilters())
            search_s += time.perf_counter() - t
            h = recall_at_k([r.product.product_id for r in ranked], row["product_id"])
            hits.append(h)
            per_product.setdefault(row["product_id"], []).append(h[1])
        facts = live.snapshot_facts
    finally:
        live.close()
    worst = sorted(per_product.items(), key=lambda kv: float(np.mean(kv[1])))[:5]
    return {
        "adaptation": settings.adaptation,
        "snapshot_adaptation": facts.get("adaptation"),
        "adaptation_reason": facts.get("adaptation_reason"),
        "index_dim": facts.get("index_dim", facts.get("dim")),
        "recall": mean_recall(hits),
        "search_ms_mean": round(1000 * search_s / max(1, len(queries)), 3),
        "index": facts.get("index", {}),
        "worst_products_r1": {k: round(float(np.mean(v)), 3) for k, v in worst},
    }


def run(grocery: Path, data_dir: Path, model: str | None, name: str) -> dict[str, Any]:
    settings = Settings(data_dir=data_dir, adaptation="none")
    if model:
        settings = settings.model_copy(update={"model": model})
    default = settings.model_copy(update={"adaptation": Settings().adaptation})
    t = time.perf_counter()
    embedder = load_embedder(settings)
    load_s = time.perf_counter() - t
    catalog = grocery / "catalog.csv"

    cold = run_index(settings, catalog, embedder=embedder)
    warm = run_index(settings, catalog, embedder=embedder)
    assert warm.indexed == 0, "the incremental re-run embedded images again"

    queries = read_csv(grocery / "queries_val.csv")
    vecs = []
    embed_s = 0.0
    for row in queries:
        data = (grocery / row["image"]).read_bytes()
        t = time.perf_counter()
        img = decode_image(
            data,
            max_pixels=settings.max_image_pixels,
            draft_size=embedder.preprocess_config.resize,
        )
        vecs.append(embedder.embed([img])[0])
        embed_s += time.perf_counter() - t
    baseline = evaluate(settings, embedder.name, queries, vecs)

    adapted = run_index(default, catalog, embedder=embedder)
    assert adapted.indexed == 0, "the adapted re-run embedded images again"
    snap_facts = default.snapshots_dir / adapted.snapshot_id / "facts.json"
    default_result = evaluate(default, embedder.name, queries, vecs)
    default_result["index_seconds"] = adapted.seconds
    default_result["snapshot_facts_adaptation"] = json.loads(snap_facts.read_text()).get(
        "adaptation"
    )

    n = len(queries)
    ratio = {
        k: round(default_result["recall"][k] / max(baseline["recall"][k], 1e-9), 4)
        for k in baseline["recall"]
    }
    return {
        "benchmark": name,
        "model": embedder.name,
        "dim": embedder.dim,
        "catalog": {"images": cold.vectors, "products": cold.products},
        "queries": n,
        # The default pipeline's numbers (settings.adaptation default) first.
        "adaptation": default.adaptation,
        "recall": default_result["recall"],
        "baseline": baseline,
        "default": default_result,
        "ratio_default_over_baseline": ratio,
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
            "search_mean_baseline": baseline["search_ms_mean"],
            "search_mean_default": default_result["search_ms_mean"],
        },
        "settings": {
            "batch_size": settings.batch_size,
            "decode_workers": settings.decode_workers,
            "ort_threads": settings.ort_threads,
        },
        "machine": machine(),
    }


def markdown(r: dict[str, Any]) -> str:
    b, d = r["baseline"]["recall"], r["default"]["recall"]
    ratio = r["ratio_default_over_baseline"]
    ix = r["indexing"]
    inc = ix["incremental"]
    ad = r["default"]["snapshot_adaptation"] or {}
    ad_line = (
        f"`{ad.get('kind')}` {ad.get('dim_in')} -> {ad.get('dim_out')}-d, fitted on "
        f"{ad.get('n_images')} images / {ad.get('n_products')} products in "
        f"{ad.get('fit_seconds')} s"
        if ad
        else f"none ({r['default']['adaptation_reason']})"
    )
    return f"""# Grocery photo -> product search: default pipeline vs plain features

Model `{r["model"]}` (dim {r["dim"]}), catalog {r["catalog"]["images"]} images /
{r["catalog"]["products"]} products (`catalog.csv`), {r["queries"]} val queries
(`queries_val.csv`), product-level recall (README protocol), through the real
pipeline (`run_index` -> snapshot -> `LiveIndex.search`), both rows in one run
with the same query vectors.

Default pipeline: `adaptation={r["default"]["adaptation"]}`, snapshot adaptation: {ad_line}.
Baseline: `adaptation={r["baseline"]["adaptation"]}` (SHOPLENS_ADAPTATION=none).

| pipeline | Recall@1 | Recall@5 | Recall@10 | index dim | search ms (mean) |
|---|---:|---:|---:|---:|---:|
| baseline (`adaptation=none`) | {b["R@1"]:.4f} | {b["R@5"]:.4f} | {b["R@10"]:.4f} \
| {r["baseline"]["index_dim"]} | {r["baseline"]["search_ms_mean"]} |
| default (`adaptation={r["default"]["adaptation"]}`) | {d["R@1"]:.4f} | {d["R@5"]:.4f} \
| {d["R@10"]:.4f} | {r["default"]["index_dim"]} | {r["default"]["search_ms_mean"]} |
| ratio default / baseline | {ratio["R@1"]:.3f} | {ratio["R@5"]:.3f} | {ratio["R@10"]:.3f} | | |

| indexing | value |
|---|---:|
| cold (images/s) | {ix["cold"]["images_per_s"]} ({ix["cold"]["seconds"]} s) |
| incremental re-run (images/s) | {inc["images_per_s"]} ({inc["seconds"]} s) |
| incremental re-run + adaptation fit (s) | {r["default"].get("index_seconds")} |
| query decode+embed (ms, mean) | {r["query_ms"]["decode_embed_mean"]} |

Index: `{r["default"]["index"].get("type")}`. Settings: {r["settings"]}.
Machine: {r["machine"]}. Timings are on a shared machine and vary with its load.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--model", default=None)
    ap.add_argument("--name", default="quality_default")
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
