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

Writes benchmarks/results/ann.json and ann.md.
"""

from __future__ import annotations

import os

# Before FAISS loads libgomp: spinning OpenMP waits on a shared 2-core machine
# steal the very cores being measured.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.indexer.vectors.index import VectorIndex

DIM = 1280
K = 10
CLUSTERS = 2048
CATEGORIES = 64
SPREAD = 0.7  # norm of a product centre's offset from its category centre
RANK = 16
VARIATION = 0.5  # norm of the within-product low-rank variation
NOISE = 0.4  # norm of the isotropic noise
SEED = 20251125
RESULTS = Path(__file__).resolve().parent / "results"
_GEN_CHUNK = 2048
# Filtered searches measured: fraction of the collection allowed.
FILTER_SELECTIVITY = (0.01, 0.1)
_GT_CHUNK = 200_000


# ----------------------------------------------------------------- data
class Generator:
    """The synthetic distribution: fixed by the seed, sampled in chunks."""

    def __init__(self, dim: int = DIM, clusters: int = CLUSTERS, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        # Power-law spectrum in a random orthonormal basis: variance of
        # direction i ~ 1/(i+1), like the decaying spectra of CNN embeddings.
        basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
        scale = (1.0 / np.sqrt(np.arange(1, dim + 1))).astype(np.float32)
        self.mix = (scale[:, None] * basis.T).astype(np.float32)  # (dim, dim)
        # Two levels, so clusters overlap as products of one category do: a
        # few dozen category centres, each product cluster a perturbation of one.
        cats = rng.standard_normal((CATEGORIES, dim)).astype(np.float32) @ self.mix
        cats /= np.linalg.norm(cats, axis=1, keepdims=True)
        own = rng.standard_normal((clusters, dim)).astype(np.float32) @ self.mix
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        centres = cats[rng.integers(0, CATEGORIES, clusters)] + np.float32(SPREAD) * own
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        # Each cluster varies along its own few directions (pose, lighting,
        # background of one product line) with ~0.6 of the centre's norm.
        dirs = rng.standard_normal((clusters, RANK, dim)).astype(np.float32)
        dirs /= np.linalg.norm(dirs, axis=2, keepdims=True)
        self.dirs = dirs * np.float32(VARIATION / np.sqrt(RANK))
        self.noise = np.float32(NOISE / np.sqrt(dim))
        self.dim = dim
        self.clusters = clusters

    def sample(self, n: int, rng: np.random.Generator) -> NDArray[np.float32]:
        label = rng.integers(0, self.clusters, n)
        coef = rng.standard_normal((n, RANK)).astype(np.float32)
        x = self.centres[label] + np.einsum("nr,nrd->nd", coef, self.dirs[label])
        x += self.noise * rng.standard_normal((n, self.dim), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out: NDArray[np.float32] = x.astype(np.float32)
        return out


def make_base(path: Path, n: int, gen: Generator) -> NDArray[np.float32]:
    """Write (or reuse) ``n`` base vectors as a float32 .npy; returns a read-only memmap."""
    if path.exists():
        base: NDArray[np.float32] = np.load(path, mmap_mode="r")
        if base.shape == (n, gen.dim):
            return base
    tmp = path.with_suffix(".part")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(n, gen.dim))
    rng = np.random.default_rng([SEED, n])
    for s in range(0, n, _GEN_CHUNK):
        out[s : s + _GEN_CHUNK] = gen.sample(min(_GEN_CHUNK, n - s), rng)
    out.flush()
    del out
    os.replace(tmp, path)
    base = np.load(path, mmap_mode="r")
    return base


def _merge(
    best: tuple[NDArray[np.float32], NDArray[np.int64]],
    d: NDArray[np.float32],
    i: NDArray[np.int64],
    k: int,
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    all_s = np.concatenate([best[0], d], axis=1)
    all_i = np.concatenate([best[1], i], axis=1)
    top = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)


def _empty(m: int, k: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    return np.full((m, k), -np.inf, dtype=np.float32), np.full((m, k), -1, dtype=np.int64)


def exact_topk(
    base: NDArray[np.float32],
    q: NDArray[np.float32],
    k: int,
    bench_q: int,
    allowed: dict[str, NDArray[np.bool_]],
    filtered_q: int,
) -> tuple[NDArray[np.int64], dict[str, NDArray[np.int64]], float, float]:
    """Exact top-k rows by chunks, for all of ``q`` and, per ``allowed`` mask,
    for the first ``filtered_q`` queries restricted to the mask; plus the
    flat-search seconds for ``bench_q`` queries, 1 thread, batched and singly."""
    n = base.shape[0]
    best = _empty(q.shape[0], k)
    best_f = {name: _empty(filtered_q, k) for name in allowed}
    batch_s = single_s = 0.0
    single_q = max(1, bench_q // 10)
    for s in range(0, n, _GT_CHUNK):
        chunk = np.ascontiguousarray(base[s : s + _GT_CHUNK])
        flat = faiss.IndexFlatIP(base.shape[1])
        flat.add(chunk)
        faiss.omp_set_num_threads(2)
        d, i = flat.search(q, k)
        best = _merge(best, d, i + s, k)
        for name, mask in allowed.items():
            bits = np.packbits(mask[s : s + chunk.shape[0]], bitorder="little")
            params = faiss.SearchParameters()
            params.sel = faiss.IDSelectorBitmap(chunk.shape[0], faiss.swig_ptr(bits))
            d, i = flat.search(q[:filtered_q], k, params=params)
            best_f[name] = _merge(best_f[name], d, np.where(i >= 0, i + s, -1), k)
        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        flat.search(q[:bench_q], k)
        batch_s += time.perf_counter() - t
        t = time.perf_counter()
        for j in range(single_q):
            flat.search(q[j : j + 1], k)
        single_s += (time.perf_counter() - t) * bench_q / single_q
        del flat, chunk
    faiss.omp_set_num_threads(2)
    return best[1], {name: b[1] for name, b in best_f.items()}, batch_s, single_s


# ------------------------------------------------------------ measuring
def _rss() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, val = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(val.split()[0]) * 1024
    return out


def _recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    hits = sum(len(set(f.tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def _qps_single(idx: VectorIndex, q: NDArray[np.float32], threads: int) -> float:
    """Queries/s with one query per call, from ``threads`` Python threads (service pattern)."""
    faiss.omp_set_num_threads(1)
    parts = np.array_split(np.arange(q.shape[0]), threads)

    def work(rows: NDArray[np.int64]) -> None:
        faiss.omp_set_num_threads(1)  # per thread in libgomp
        for j in rows:
            idx.search(q[j : j + 1], K)

    ts = [threading.Thread(target=work, args=(p,)) for p in parts]
    t = time.perf_counter()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    return float(q.shape[0] / (time.perf_counter() - t))


def _cpu_qps_single(idx: VectorIndex, q: NDArray[np.float32]) -> float:
    """Queries per second of this thread's CPU time, one query per call."""
    faiss.omp_set_num_threads(1)
    t = time.thread_time()
    for j in range(q.shape[0]):
        idx.search(q[j : j + 1], K)
    return float(q.shape[0] / (time.thread_time() - t))


def _qps_batch(idx: VectorIndex, q: NDArray[np.float32], threads: int) -> float:
    faiss.omp_set_num_threads(threads)
    t = time.perf_counter()
    idx.search(q, K)
    return float(q.shape[0] / (time.perf_counter() - t))


def measure_saved(directory: Path, queries: Path, truth: Path, qps_q: int) -> dict[str, Any]:
    """Run in a fresh process: load, then memory, speed and recall of the saved index."""
    q = np.load(queries)
    # .npz: ground truth plus filtered cases; a bare .npy: unfiltered only.
    filtered: dict[str, tuple[NDArray[np.int64], NDArray[np.int64]]] = {}
    if truth.suffix == ".npz":
        with np.load(truth) as z:
            gt_ids = z["gt"]
            for key in z.files:
                if key.startswith("allowed_"):
                    name = key.removeprefix("allowed_")
                    filtered[name] = (z[key], z[f"gt_{name}"])
    else:
        gt_ids = np.load(truth)
    before = _rss()
    t = time.perf_counter()
    idx = VectorIndex.load(directory)
    load_s = time.perf_counter() - t
    after_load = _rss()
    faiss.omp_set_num_threads(2)
    _, found = idx.search(q, K)  # also warms what the queries touch
    rec = _recall(found, gt_ids)
    after_queries = _rss()
    sweep = []
    p = idx.facts["params"]
    if idx.facts["type"] != "flat-ip":
        nprobes = sorted({max(1, p["nprobe"] // 4), max(1, p["nprobe"] // 2), p["nprobe"]})
        nprobes.append(p["nprobe"] * 2)
        for nprobe in nprobes:
            for short in (10, 50, 100):
                view = idx.tuned(nprobe=nprobe, shortlist_min=short, shortlist_factor=1)
                faiss.omp_set_num_threads(2)
                _, f = view.search(q, K)
                sweep.append(
                    {
                        "nprobe": nprobe,
                        "shortlist_min": short,
                        "recall_at_10": round(_recall(f, gt_ids), 4),
                        "qps_1thread": round(_qps_single(view, q[:qps_q], 1), 1),
                        "qps_1thread_cpu": round(_cpu_qps_single(view, q[:qps_q]), 1),
                    }
                )
    filters = {}
    for name, (rows, gt_f) in filtered.items():
        faiss.omp_set_num_threads(1)
        t = time.perf_counter()
        found_f = np.concatenate(
            [idx.search(q[j : j + 1], K, allowed_ids=rows)[1] for j in range(gt_f.shape[0])]
        )
        secs = time.perf_counter() - t
        filters[name] = {
            "allowed": int(rows.shape[0]),
            "queries": int(gt_f.shape[0]),
            "recall_at_10": round(_recall(found_f, gt_f), 4),
            "all_k_returned": bool((found_f >= 0).all()),
            "all_in_allowed": bool(np.isin(found_f, rows).all()),
            "qps_1thread": round(gt_f.shape[0] / secs, 1),
        }
    res = {
        "filtered": filters,
        "load_s": round(load_s, 2),
        "recall_at_10": round(rec, 4),
        "qps_1thread": round(_qps_single(idx, q[:qps_q], 1), 1),
        "qps_1thread_cpu": round(_cpu_qps_single(idx, q[:qps_q]), 1),
        "qps_2threads": round(_qps_single(idx, q[:qps_q], 2), 1),
        "qps_batch_1thread": round(_qps_batch(idx, q, 1), 1),
        "qps_batch_2threads": round(_qps_batch(idx, q, 2), 1),
        "sweep": sweep,
    }
    end = _rss()
    res["rss"] = {
        "before_load": before,
        "after_load": after_load,
        "after_queries": after_queries,
        "after_all": end,
        "index_anon_bytes": after_queries["RssAnon"] - before["RssAnon"],
        "index_file_bytes": after_queries["RssFile"] - before["RssFile"],
        "index_rss_bytes": after_queries["VmRSS"] - before["VmRSS"],
    }
    res["facts"] = idx.facts
    return res


# ---------------------------------------------------------------- driver
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
    rss0 = _rss()
    idx = VectorIndex.build(
        base,
        np.arange(n, dtype=np.int64),
        exact_max=settings.exact_index_max,
        memory_budget_mb=settings.index_memory_budget_mb,
    )
    build_rss = _rss()
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


if __name__ == "__main__":
    main()
