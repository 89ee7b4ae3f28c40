"""Shop the look on the IKEA room photos: does ``regions=auto`` find a room's products?

``python -m benchmarks.look [--ikea DIR] [--data-dir DIR] [--limit N]``

The protocol of ``../shared/data/ikea/README.md`` (evaluation only: nothing from
it enters the repository but these numbers). Indexes ``catalog.csv`` into
``--data-dir`` once (reused on the next run), then for every dev room asks for up
to 20 distinct products two ways, in the same run:

* **baseline**: whole-photo search, as ``POST /v1/search`` without ``regions``;
* **regions**: what ``POST /v1/search?regions=auto&k=20`` computes (the
  whole-photo search plus ``find_regions`` on the full-resolution decode); its
  regions are read round robin, best first, until 20 distinct products, then
  topped up from the whole-photo results when the regions hold fewer.

Reports hit@10, recall@10 and recall@20 (means over rooms) and seconds per photo
(wall clock of that computation, one photo at a time, on whatever else the
machine is doing: the load average is recorded beside it). The finder's
thresholds were tuned on the even rows of ``queries_dev.csv``; the odd rows are
reported apart as the held-out half, and all rows together.

Writes ``benchmarks/results/look.json`` and ``look.md``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine, read_csv, write_results
from shoplens.config import Settings
from shoplens.indexer.catalog.types import Hit, SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from shoplens.indexer.serving.look.finder import Region, find_regions
from shoplens.models.base import ImageEmbedder
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder

DEFAULT_IKEA = REPO.parent / "shared" / "data" / "ikea"
K = 20


def round_robin(regions: Sequence[Region], whole: Sequence[Hit], k: int = K) -> list[str]:
    """The protocol's reading: each region's next product in turn, best region first."""
    out: list[str] = []
    lists = [[h.product.product_id for h in r.hits] for r in regions]
    for rank in range(max((len(x) for x in lists), default=0)):
        for ids in lists:
            if rank < len(ids) and ids[rank] not in out:
                out.append(ids[rank])
    out += [h.product.product_id for h in whole if h.product.product_id not in out]
    return out[:k]


def scores(ranked: Sequence[str], truth: set[str]) -> dict[str, float]:
    return {
        "hit@10": float(bool(truth & set(ranked[:10]))),
        "recall@10": len(truth & set(ranked[:10])) / min(10, len(truth)),
        "recall@20": len(truth & set(ranked[:20])) / min(20, len(truth)),
    }


def whole_photo(data: bytes, embedder: ImageEmbedder, live: LiveIndex) -> list[Hit]:
    """As the service's ``embed_photo`` + search: JPEG draft decode, one vector."""
    image = decode_image(data, draft_size=embedder.preprocess_config.resize)
    return live.search(embedder.embed([image])[0], K, SearchFilters())


def run_room(data: bytes, embedder: ImageEmbedder, live: LiveIndex) -> dict[str, Any]:
    # CPU seconds beside wall seconds: on a shared machine the wall clock includes
    # waiting for a core; CPU time over the cores used is what an idle machine would take.
    t0, c0 = time.perf_counter(), time.process_time()
    whole = whole_photo(data, embedder, live)
    t1, c1 = time.perf_counter(), time.process_time()
    regions = find_regions(decode_image(data), embedder, live, K, SearchFilters())
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "baseline": [h.product.product_id for h in whole],
        "regions": round_robin(regions, whole),
        "n_regions": len(regions),
        "baseline_s": t1 - t0,
        "regions_s": t2 - t0,  # the whole regions=auto computation, whole photo included
        "baseline_cpu_s": c1 - c0,
        "regions_cpu_s": c2 - c0,
    }


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"rooms": len(rows)}
    for way in ("baseline", "regions"):
        per = [scores(r[way], r["truth"]) for r in rows]
        out[way] = {m: round(statistics.fmean(p[m] for p in per), 4) for m in per[0]}
        secs = sorted(r[f"{way}_s"] for r in rows)
        out[way]["s_per_photo_mean"] = round(statistics.fmean(secs), 3)
        out[way]["s_per_photo_p90"] = round(secs[int(0.9 * (len(secs) - 1))], 3)
        cpu = statistics.fmean(r[f"{way}_cpu_s"] for r in rows)
        out[way]["cpu_s_per_photo_mean"] = round(cpu, 3)
    out["regions"]["regions_per_photo"] = round(statistics.fmean(r["n_regions"] for r in rows), 2)
    return out


def markdown(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        "# Shop the look on the IKEA dev rooms (`python -m benchmarks.look`)",
        "",
        f"{data['model']}, {data['catalog_products']} catalog products, "
        f"{m['cpus']} CPUs, Python {m['python']}, {m['at']}. Load average "
        f"{data['load_before']} before, {data['load_after']} after (the machine is shared: "
        "seconds include waiting for the CPU).",
        "",
        "Finder thresholds were tuned on the even rows of queries_dev.csv; **odd rows are "
        "the held-out half**.",
        "",
        "| rooms | way | hit@10 | recall@10 | recall@20 | s/photo mean | s/photo p90 "
        "| CPU s/photo |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, part in data["parts"].items():
        for way in ("baseline", "regions"):
            r = part[way]
            cells = [f"{r[m]:.3f}" for m in ("hit@10", "recall@10", "recall@20")]
            times = ("s_per_photo_mean", "s_per_photo_p90", "cpu_s_per_photo_mean")
            cells += [f"{r[m]:.2f}" for m in times]
            lines.append(f"| {name} ({part['rooms']}) | {way} | {' | '.join(cells)} |")
    lines += [
        "",
        f"Regions per photo: {data['parts']['all']['regions']['regions_per_photo']} (mean). "
        "Baseline: whole-photo search, same run. Regions: round robin over the regions, "
        "best first, topped up from the whole-photo results. s/photo: wall clock, one photo "
        f"at a time, with {data['threads']} ONNX Runtime threads; CPU s/photo: process CPU "
        "time (all threads), what the computation costs whatever else runs.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ikea", type=Path, default=DEFAULT_IKEA)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/shoplens-look-data"))
    parser.add_argument("--limit", type=int, default=0, help="only the first N rooms")
    args = parser.parse_args()
    settings = Settings(data_dir=args.data_dir)
    embedder = load_embedder(settings)
    run_index(settings, args.ikea / "catalog.csv", embedder=embedder)  # incremental
    live = LiveIndex.open(settings, embedder.name)
    rooms = read_csv(args.ikea / "queries_dev.csv")
    if args.limit:
        rooms = rooms[: args.limit]
    load_before = round(os.getloadavg()[0], 2)
    rows = []
    for i, room in enumerate(rooms):
        row = run_room((args.ikea / room["image"]).read_bytes(), embedder, live)
        row["truth"] = set(room["product_ids"].split())
        row["row"] = i
        rows.append(row)
        print(f"{i + 1}/{len(rooms)} rooms, {row['regions_s']:.2f} s", file=sys.stderr)
    data = {
        "machine": machine(),
        "model": embedder.name,
        "catalog_products": live.size["products"],
        "threads": settings.ort_threads or os.cpu_count(),
        "load_before": load_before,
        "load_after": round(os.getloadavg()[0], 2),
        "parts": {
            "all": summary(rows),
            "even rows (tuning)": summary(rows[0::2]),
            "odd rows (held out)": summary(rows[1::2]),
        },
    }
    live.close()
    md = markdown(data)
    write_results("look", data, md)
    print(md)


if __name__ == "__main__":
    main()
