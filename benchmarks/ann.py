"""Vector index benchmark: build time, memory, QPS and recall@10 against exact search.

    python -m benchmarks.ann [--sizes 100000,1000000] [--queries 1000]

Data are synthetic but clustered like image embeddings, not uniform noise:
cluster centres drawn with a power-law spectrum in a random basis (a few
directions carry most of the variance, as in CNN features), per-cluster
low-rank variation, isotropic noise, all L2-normalised. Queries come from the
same process and are not in the base set. The base set is written in chunks
to a float32 .npy in a scratch directory (reused by later runs with the same
size and seed) so the generator never holds it in memory.

Per size, in this order:
1. ground truth: exact top-10 by chunked ``IndexFlatIP`` (merge per chunk);
2. baseline: exact flat search timed on the same chunks with 1 thread (its
   QPS is the time summed over chunks, i.e. an in-RAM flat index's);
3. ``VectorIndex.build`` with the service defaults (``Settings``), then save;
4. a fresh child process loads the saved index (as the service would) and
   measures resident memory (RSS anon + file-backed, before/after load and
   queries), QPS with 1 and 2 threads, recall@10, and a small sweep of the
   search knobs (nprobe, shortlist) around the defaults.

Writes benchmarks/results/ann.json and ann.md. The data and exact answers are
made in ``ann_data``, step 4 runs ``ann_measure``, the report is ``ann_report``.
"""

from __future__ import annotations

import os

# Before FAISS loads libgomp: spinning OpenMP waits on a shared 2-core machine
# steal the very cores being measured.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from benchmarks.ann_data import DIM, SEED, Generator, K, exact_topk, make_base
from benchmarks.ann_measure import measure_saved, rss
from benchmarks.ann_report import write_results
from shoplens.config import Settings
from shoplens.indexer.vectors.index import VectorIndex

RESULTS = Path(__file__).resolve().parent / "results"
# Filtered searches measured: fraction of the collection allowed.
FILTER_SELECTIVITY = (0.01, 0.1)


def run_size(n: int, nq: int, scratch: Path, gen: Generator, qps_q: int) -> dict[str, Any]:
    settings = Settings()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] n={n}: {msg}", flush=True)

    t = time.perf_counter()
    base = make_base(scratch / f"base_{n}.npy", n, gen)
    q = gen.sample(nq, np.random.default_rng([SEED, n, 1]))
    log(f"data ready in {time.perf_counter() - t:.0f}s")
    t = time.perf_counter()
    bench_q = min(nq, 200)
    frng = np.random.default_rng([SEED, n, 2])
    allowed = {f"{sel:g}": frng.random(n) < sel for sel in FILTER_SELECTIVITY}
    filtered_q = min(nq, 200)
    truth, truth_f, flat_batch_s, flat_single_s = exact_topk(
        base, q, K, bench_q, allowed, filtered_q
    )
    log(f"ground truth in {time.perf_counter() - t:.0f}s")
    faiss.omp_set_num_threads(2)
    rss0 = rss()
    idx = VectorIndex.build(
        base,
        np.arange(n, dtype=np.int64),
        exact_max=settings.exact_index_max,
        memory_budget_mb=settings.index_memory_budget_mb,
    )
    build_rss = rss()
    log(f"built {idx.facts['type']} in {idx.facts['build_s']:.0f}s")
    out_dir = scratch / f"index_{n}"
    shutil.rmtree(out_dir, ignore_errors=True)
    t = time.perf_counter()
    written = idx.save(out_dir)
    save_s = time.perf_counter() - t
    del idx, base
    qf, tf = scratch / f"queries_{n}.npy", scratch / f"truth_{n}.npz"
    np.save(qf, q)
    arrays: dict[str, Any] = {"gt": truth}
    for name, mask in allowed.items():
        arrays[f"allowed_{name}"] = np.flatnonzero(mask).astype(np.int64)
        arrays[f"gt_{name}"] = truth_f[name]
    np.savez(tf, **arrays)
    log("measuring the saved index in a fresh process")
    child = subprocess.run(
        [
            sys.executable,
            *("-m", "benchmarks.ann", "--measure", str(out_dir), str(qf), str(tf)),
            *("--qps-queries", str(qps_q)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    m = json.loads(child.stdout.strip().splitlines()[-1])
    m["loadavg_after_measure"] = [round(v, 1) for v in os.getloadavg()]
    facts = m.pop("facts")
    disk = sum((out_dir / f).stat().st_size for f in written)
    res = {
        "n": n,
        "dim": DIM,
        "queries": nq,
        "type": facts["type"],
        "params": facts["params"],
        "reason": facts["reason"],
        "build_s": facts["build_s"],
        "save_s": round(save_s, 2),
        "build_peak_rss_bytes": build_rss["VmHWM"],
        "build_rss_anon_delta_bytes": build_rss["RssAnon"] - rss0["RssAnon"],
        "disk_bytes": disk,
        "est_resident_bytes": facts["bytes"],
        "bytes_per_vector_resident": round(m["rss"]["index_rss_bytes"] / n, 1),
        **m,
        "baseline_flat": {
            "what": "exact IndexFlatIP, 1 thread, time summed over base chunks",
            "queries_timed": bench_q,
            "qps_batch_1thread": round(bench_q / flat_batch_s, 1),
            "qps_1thread": round(bench_q / flat_single_s, 1),
            "ram_bytes": n * DIM * 4,
        },
    }
    res["speedup_vs_flat_1thread"] = round(
        res["qps_1thread"] / res["baseline_flat"]["qps_1thread"], 1
    )
    res["speedup_vs_flat_batch_1thread"] = round(
        res["qps_batch_1thread"] / res["baseline_flat"]["qps_batch_1thread"], 1
    )
    shutil.rmtree(out_dir, ignore_errors=True)
    log(f"recall@10={res['recall_at_10']} qps_1thread={res['qps_1thread']}")
    return res


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--qps-queries", type=int, default=500, help="queries timed for QPS")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "shoplens-ann")
    ap.add_argument("--measure", nargs=3, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--keep-data", action="store_true", help="keep the generated base sets")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where ann.json/ann.md go")
    args = ap.parse_args(argv)
    if args.measure:
        directory, queries, truth = args.measure
        print(json.dumps(measure_saved(directory, queries, truth, qps_q=args.qps_queries)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    args.scratch.mkdir(parents=True, exist_ok=True)
    gen = Generator()
    for n in sizes:
        res = run_size(n, args.queries, args.scratch, gen, args.qps_queries)
        # Written after every size, merged with earlier runs by n, so a size
        # run on its own (e.g. 1M in the background) lands in the same report.
        report = write_results(args.out, res, args)
        if not args.keep_data:
            (args.scratch / f"base_{n}.npy").unlink(missing_ok=True)
    print(report)


if __name__ == "__main__":
    main()
