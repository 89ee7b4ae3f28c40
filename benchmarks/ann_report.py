"""The vector index benchmark's results: ``ann.json`` (merged by size with earlier
runs) and the ``ann.md`` report written from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import faiss

from benchmarks.ann_data import CLUSTERS, DIM, RANK


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def markdown(results: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [
        "# Vector index benchmark",
        "",
        f"`python -m benchmarks.ann --sizes {meta['sizes']} --queries {meta['queries']}` on "
        f"{meta['machine']} ({meta['cpus']} CPUs, shared: load average "
        f"{meta.get('loadavg_at_end', '?')} at the end), faiss {meta['faiss']}, "
        f"{meta['date']}. Synthetic clustered {DIM}-d vectors ({CLUSTERS} clusters, "
        f"rank-{RANK} variation + noise, power-law spectrum); recall@10 against exact "
        "search. Index built with the service defaults (`exact_index_max`, "
        '`index_memory_budget_mb`). QPS "1 thread" = one query per call, one '
        'thread, OpenMP 1 (the service pattern); "batch" = all queries in one call.',
        "",
        "| n | index | build s | resident MB (anon + file) | bytes/vector | disk MB "
        "| QPS 1 thread (CPU) | QPS 2 threads | QPS batch 1 thr | recall@10 "
        "| flat QPS 1 thread | flat QPS batch | speed-up 1 thr (batch) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        p = r["params"]
        kind = r["type"]
        if kind != "flat-ip":
            kind += (
                f" IVF{p['nlist']},PQ{p['pq_m']}x4fs nprobe={p['nprobe']} "
                f"shortlist={p['shortlist_min']} store={p['rerank_store']}"
            )
        rss = r["rss"]
        lines.append(
            f"| {r['n']:,} | {kind} | {r['build_s']:.0f} | {_mb(rss['index_rss_bytes'])} "
            f"({_mb(rss['index_anon_bytes'])} + {_mb(rss['index_file_bytes'])}) "
            f"| {r['bytes_per_vector_resident']:.0f} | {_mb(r['disk_bytes'])} "
            f"| {r['qps_1thread']:,.0f} ({r.get('qps_1thread_cpu', 0):,.0f}) "
            f"| {r['qps_2threads']:,.0f} "
            f"| {r['qps_batch_1thread']:,.0f} | {r['recall_at_10']:.3f} "
            f"| {r['baseline_flat']['qps_1thread']:,.1f} "
            f"| {r['baseline_flat']['qps_batch_1thread']:,.1f} "
            f"| {r['speedup_vs_flat_1thread']}x ({r['speedup_vs_flat_batch_1thread']}x) |"
        )
    lines += ["", "## Why these index types", ""]
    lines += [f"- n={r['n']:,}: {r['reason']}" for r in results]
    lines += [
        "",
        "## Filtered search (`allowed_ids`, random subset; 1 query per call, 1 thread)",
        "",
        "| n | allowed | recall@10 vs exact filtered | k always returned | QPS |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        for name, f in r.get("filtered", {}).items():
            lines.append(
                f"| {r['n']:,} | {float(name):.0%} ({f['allowed']:,}) "
                f"| {f['recall_at_10']:.3f} | {f['all_k_returned'] and f['all_in_allowed']} "
                f"| {f['qps_1thread']:,.0f} |"
            )
    lines += ["", "## Search-knob sweep (shortlist = candidates re-ranked exactly)", ""]
    for r in results:
        if r["sweep"]:
            lines += [f"n={r['n']:,}:", ""]
            lines += ["| nprobe | shortlist | recall@10 | QPS 1 thread | QPS 1 thread CPU |"]
            lines += ["|---|---|---|---|---|"]
            lines += [
                f"| {s['nprobe']} | {s['shortlist_min']} | {s['recall_at_10']:.3f} "
                f"| {s['qps_1thread']:,.0f} | {s.get('qps_1thread_cpu', 0):,.0f} |"
                for s in r["sweep"]
            ]
            lines.append("")
    lines += [
        "Resident memory is measured in a fresh process that loads the saved "
        "index and runs the 1000 queries: RSS delta, anon (FAISS structures, id "
        "maps, a RAM store) + file-backed. A disk-f16 re-rank store is read with "
        "pread, so its rows live in the shared page cache, not in the process. "
        'Load time includes verifying every file\'s sha256. "CPU" QPS = '
        "queries per second of the searching thread's own CPU time "
        "(`time.thread_time`): what one core delivers regardless of the other "
        "work on this shared machine; the other QPS columns are wall-clock.",
        "",
    ]
    return "\n".join(lines)


def write_results(out: Path, res: dict[str, Any], args: argparse.Namespace) -> str:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "ann.json"
    results = [res]
    if path.exists():
        old = json.loads(path.read_text())["results"]
        results = sorted([r for r in old if r["n"] != res["n"]] + results, key=lambda r: r["n"])
    meta = {
        "sizes": ",".join(str(r["n"]) for r in results),
        "queries": args.queries,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "faiss": faiss.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        # Other work on the machine slows every number here; say how much there was.
        "loadavg_at_end": [round(v, 1) for v in os.getloadavg()],
    }
    path.write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    report = markdown(results, meta)
    (out / "ann.md").write_text(report)
    return report
