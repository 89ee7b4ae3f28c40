"""Sizing table for docs/scaling.md: what one replica's index costs at 100k and 1M vectors.

    python -m benchmarks.scaling [--sizes 100000,1000000] [--queries 200]

For each size, synthetic clustered unit vectors at the default model's
dimension (``effnet-lite0-lite1-ml-int8``: 3168; a large catalog's learnt
adaptation keeps all of them) go through the code the service runs:

1. ``build_snapshot`` (``SHOPLENS_ADAPTATION=none``, so the index holds the
   model's own dimension; the default ``exact_index_max`` and
   ``index_memory_budget_mb`` pick the index type exactly as ``shoplens
   index`` would): build, then write + checksum + fsync + rename + pointer;
2. a fresh child process ``load_snapshot_dir`` (what a replica does on start
   and on every new snapshot: verify every checksum, open the index) and
   measures RSS before/after (anon + file-backed), then searches one query per
   call on one thread (``to_index_space`` + ``index.search``, k=10): latency
   p50/p95 and searches per CPU-second of that thread (= per core);
3. baseline, same run: the exact flat index. At 100k it is a real flat
   snapshot measured the same way; at 1M its float32 vectors (12.7 GB) do not
   fit this machine next to the rest, so it is timed by chunks of the base set
   (one query per call, one thread, time summed over the chunks) and its
   memory is n x dim x 4 bytes. The chunked pass also gives the exact top-10
   for recall@10.

Data: cluster centres in two levels (categories, products) with a decaying
spectrum, shared low-rank variation and noise from a pool, L2-normalised,
stored float16 on disk (reused by later runs with the same size). Vector data
and the snapshot go to ``--scratch`` (a disk, not tmpfs: 1M needs ~20 GB).

Run time: ~1.5 min for 100k; 1M is dominated by the real IVF build (k-means
on 64k x 3168-d, then assigning 1M vectors): 12 min in all on the busy 2-core
development machine, over the ~5 min aimed at. ``--sizes 100000`` for a quick
look; ``--keep-data`` keeps the base sets for the next run (1M: 6.3 GB, 95 s
to generate).

Writes benchmarks/results/scaling.json and scaling.md.
"""

from __future__ import annotations

import os

# Before FAISS loads libgomp: spinning OpenMP waits steal the measured cores.
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
from numpy.typing import NDArray

from benchmarks.ann_data import make_base
from benchmarks.ann_measure import rss
from benchmarks.common import machine, write_results
from shoplens.config import Settings
from shoplens.indexer.catalog.types import StoredImage
from shoplens.indexer.serving.snapshot import CatalogVectors, build_snapshot, load_snapshot_dir
from shoplens.models.registry import DEFAULT_MODEL, available_models

K = 10
SEED = 20261206
GIB = 1024**3
_GEN_CHUNK = 8192
_FLAT_CHUNK = 100_000


def model_dim() -> int:
    return next(m.dim for m in available_models() if m.name == DEFAULT_MODEL) or 3168


# ----------------------------------------------------------------------- data
class Data:
    """The synthetic distribution: 64 categories x 4096 products, low-rank variation."""

    def __init__(self, dim: int, seed: int = SEED) -> None:
        rng = np.random.default_rng(seed)
        # A decaying spectrum over a random permutation of the axes: a few
        # directions carry most of the variance, as in CNN features.
        scale = (1.0 / np.sqrt(np.arange(1, dim + 1)))[rng.permutation(dim)].astype(np.float32)
        cats = rng.standard_normal((64, dim), dtype=np.float32) * scale
        own = rng.standard_normal((4096, dim), dtype=np.float32) * scale
        cats /= np.linalg.norm(cats, axis=1, keepdims=True)
        own /= np.linalg.norm(own, axis=1, keepdims=True)
        centres = cats[rng.integers(0, 64, 4096)] + 0.7 * own
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        dirs = rng.standard_normal((32, dim), dtype=np.float32) * scale
        self.dirs = 0.5 * dirs / np.linalg.norm(dirs, axis=1, keepdims=True) / np.sqrt(32)
        pool = rng.standard_normal((16_384, dim), dtype=np.float32)
        self.pool = 0.4 * pool / np.sqrt(dim)
        self.dim = dim

    def sample(self, m: int, rng: np.random.Generator) -> NDArray[np.float32]:
        x = self.centres[rng.integers(0, self.centres.shape[0], m)]
        x = x + rng.standard_normal((m, self.dirs.shape[0]), dtype=np.float32) @ self.dirs
        x += self.pool[rng.integers(0, self.pool.shape[0], m)]
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out: NDArray[np.float32] = x.astype(np.float32)
        return out

    def base(self, path: Path, n: int) -> NDArray[np.float16]:
        """``n`` vectors as a float16 .npy (written once, then reused); a read-only memmap."""
        out: NDArray[np.float16] = make_base(
            path, n, self, dtype=np.float16, seed=SEED, chunk=_GEN_CHUNK
        )
        return out


def flat_by_chunks(
    base: NDArray[np.float16], q: NDArray[np.float32], timed: int
) -> tuple[NDArray[np.int64], float]:
    """Exact top-k rows of every query, and the flat index's seconds per query
    (one query per call, one thread, summed over the chunks of the base set)."""
    n = base.shape[0]
    best_s = np.full((q.shape[0], K), -np.inf, dtype=np.float32)
    best_i = np.full((q.shape[0], K), -1, dtype=np.int64)
    per_query = 0.0
    for s in range(0, n, _FLAT_CHUNK):
        flat = faiss.IndexFlatIP(base.shape[1])
        flat.add(np.ascontiguousarray(base[s : s + _FLAT_CHUNK], dtype=np.float32))
        faiss.omp_set_num_threads(2)
        d, i = flat.search(q, K)
        all_s, all_i = np.concatenate([best_s, d], 1), np.concatenate([best_i, i + s], 1)
        top = np.argsort(-all_s, axis=1, kind="stable")[:, :K]
        best_s, best_i = np.take_along_axis(all_s, top, 1), np.take_along_axis(all_i, top, 1)
        faiss.omp_set_num_threads(1)
        t = time.thread_time()
        for j in range(timed):
            flat.search(q[j : j + 1], K)
        per_query += (time.thread_time() - t) / timed
        del flat
    faiss.omp_set_num_threads(2)
    return best_i, per_query


# -------------------------------------------------------- build and publish
def publish(base: NDArray[np.float16], data_dir: Path, exact_max: int) -> dict[str, Any]:
    """``build_snapshot`` over ``base`` into a fresh data dir; its timings and files."""
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = Settings(data_dir=data_dir, adaptation="none", exact_index_max=exact_max)
    n = int(base.shape[0])
    images = [
        StoredImage(v, f"img{v}", f"p{v // 4}", "bench", f"{v:064x}", 0, False, 1) for v in range(n)
    ]
    before = rss()
    t = time.perf_counter()
    snap_id = build_snapshot(
        settings,
        CatalogVectors(1, images, base),  # type: ignore[arg-type]  # a float16 memmap
        model=DEFAULT_MODEL,
        dim=int(base.shape[1]),
        preprocess={},
    )
    total = time.perf_counter() - t
    path = settings.snapshots_dir / snap_id
    facts = json.loads((path / "facts.json").read_text(encoding="utf-8"))
    build_s = float(facts["index"]["build_s"])
    files = [p for p in path.rglob("*") if p.is_file()]
    return {
        "path": str(path),
        "type": facts["index"]["type"],
        "params": facts["index"]["params"],
        "reason": facts["index"]["reason"],
        "build_s": round(build_s, 2),
        # Everything after the index is built: index files, id maps, checksums of
        # every file, fsync, rename, the CURRENT pointer.
        "save_s": round(total - build_s, 2),
        "build_peak_rss_bytes": rss()["VmHWM"],
        "build_rss_before_bytes": before["VmRSS"],
        "disk_bytes": sum(p.stat().st_size for p in files),
    }


# ------------------------------------------------------------ measure (child)
def measure(snap_dir: Path, queries: Path, truth: Path) -> dict[str, Any]:
    """In a fresh process: load the snapshot as a replica does, then memory and speed."""
    q = np.load(queries)
    gt = np.load(truth)
    faiss.omp_set_num_threads(1)
    before = rss()
    t = time.perf_counter()
    snap = load_snapshot_dir(snap_dir, expected_model=None)
    load_s = time.perf_counter() - t
    after_load = rss()
    index = snap.index
    assert index is not None
    found = np.full((q.shape[0], K), -1, dtype=np.int64)
    for j in range(min(20, q.shape[0])):  # warm: first touches of lists and pages
        index.search(snap.to_index_space(q[j]), K)
    lat = []
    cpu0 = time.thread_time()
    for j in range(q.shape[0]):
        t = time.perf_counter()
        _, ids = index.search(snap.to_index_space(q[j]), K)
        lat.append(time.perf_counter() - t)
        found[j] = ids[0]
    cpu = time.thread_time() - cpu0
    after = rss()
    hits = sum(len(set(f.tolist()) & set(g.tolist())) for f, g in zip(found, gt, strict=True))
    return {
        "load_s": round(load_s, 2),
        "rss_anon_delta_bytes": after["RssAnon"] - before["RssAnon"],
        "rss_file_delta_bytes": after["RssFile"] - before["RssFile"],
        "rss_delta_bytes": after["VmRSS"] - before["VmRSS"],
        "rss_after_load_delta_bytes": after_load["VmRSS"] - before["VmRSS"],
        "queries_timed": int(q.shape[0]),
        "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3),
        "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 3),
        "searches_per_cpu_s": round(q.shape[0] / cpu, 1),
        "recall_at_10": round(hits / gt.size, 4),
    }


def measure_in_child(snap: Path, qf: Path, tf: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--measure", str(snap), str(qf), str(tf)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def row(n: int, dim: int, built: dict[str, Any], m: dict[str, Any]) -> dict[str, Any]:
    per_vec = m["rss_delta_bytes"] / n
    return {
        **{k: v for k, v in built.items() if k != "path"},
        **m,
        "resident_bytes_per_vector": round(per_vec, 1),
        "vectors_per_gib_ram": int(GIB / per_vec) if per_vec > 0 else None,
        "disk_bytes_per_vector": round(built["disk_bytes"] / n, 1),
        "vectors_per_gib_disk": int(GIB * n / built["disk_bytes"]),
        "n": n,
        "dim": dim,
    }


def run_size(n: int, nq: int, scratch: Path, data: Data, log: Any) -> dict[str, Any]:
    t = time.perf_counter()
    base = data.base(scratch / f"scaling_base_{n}_{data.dim}.npy", n)
    q = data.sample(nq, np.random.default_rng([SEED, n, 1]))
    qf, tf = scratch / f"scaling_q_{n}.npy", scratch / f"scaling_gt_{n}.npy"
    np.save(qf, q)
    log(f"n={n}: data ready in {time.perf_counter() - t:.0f}s")
    t = time.perf_counter()
    gt, flat_s_per_q = flat_by_chunks(base, q, timed=3 if n > 200_000 else 20)
    np.save(tf, gt)
    log(f"n={n}: exact answers + chunked flat timing in {time.perf_counter() - t:.0f}s")
    settings = Settings()
    built = publish(base, scratch / f"scaling_data_{n}", settings.exact_index_max)
    log(f"n={n}: {built['type']} built in {built['build_s']}s, saved in {built['save_s']}s")
    res = row(n, data.dim, built, measure_in_child(Path(built["path"]), qf, tf))
    shutil.rmtree(scratch / f"scaling_data_{n}", ignore_errors=True)
    baseline: dict[str, Any] = {"n": n, "dim": data.dim, "type": "flat-ip"}
    if n * data.dim * 4 <= 2 * GIB:
        flat = publish(base, scratch / f"scaling_flat_{n}", exact_max=n)
        baseline = row(n, data.dim, flat, measure_in_child(Path(flat["path"]), qf, tf))
        shutil.rmtree(scratch / f"scaling_flat_{n}", ignore_errors=True)
        baseline["how"] = "a flat snapshot, built, loaded and searched like the row above"
    else:
        per_vec = data.dim * 4 + 24
        baseline |= {
            "how": "not loaded (float32 vectors would not fit): timed by 100k-row chunks of "
            "the base set, one query per call, one thread, summed; memory = n x dim x 4 + ids",
            "resident_bytes_per_vector": per_vec,
            "vectors_per_gib_ram": int(GIB / per_vec),
            "latency_p50_ms": round(flat_s_per_q * 1000, 1),
            "searches_per_cpu_s": round(1 / flat_s_per_q, 2),
            "recall_at_10": 1.0,
        }
    baseline["chunked_flat_ms_per_query"] = round(flat_s_per_q * 1000, 2)
    res["speedup_vs_flat"] = round(res["searches_per_cpu_s"] / baseline["searches_per_cpu_s"], 1)
    log(f"n={n}: {res['searches_per_cpu_s']}/s per core, load {res['load_s']}s")
    return {"index": res, "flat_baseline": baseline}


def _mb(b: float) -> str:
    return f"{b / 2**20:,.0f}"


def markdown(out: dict[str, Any]) -> str:
    mach = out["machine"]
    lines = [
        "# Sizing: one replica's vector index at 100k and 1M vectors",
        "",
        f"`python -m benchmarks.scaling --sizes {out['sizes']} --queries {out['queries']}`, "
        f"{mach['at']}, {mach['cpus']} CPUs shared with other work, faiss {faiss.__version__}. "
        f"Synthetic clustered unit vectors at the default model's dimension ({out['dim']}); "
        "index type chosen by the service defaults (exact_index_max "
        f"{out['exact_index_max']}, index_memory_budget_mb {out['budget_mb']}). Searches: one "
        "query per call on one thread, k=10, query projection included, warm page cache; "
        "searches per core = queries per CPU-second of that thread (the vector index only: "
        "embedding the photo costs ~13 ms CPU more, see embed.md).",
        "",
        "| n | index | build s | save s | load s | resident MB (anon + file) "
        "| bytes/vector RAM | vectors per GiB RAM | disk MB | vectors per GiB disk "
        "| p50 ms | p95 ms | searches/s per core | recall@10 | x vs flat |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["results"]:
        for name, x in (("index", r["index"]), ("flat (baseline)", r["flat_baseline"])):
            real = "load_s" in x
            p = x.get("params", {})
            kind = x["type"]
            if kind != "flat-ip":
                kind += f" IVF{p['nlist']} nprobe={p['nprobe']} store={p['rerank_store']}"
            if name.startswith("flat"):
                kind = "flat-ip (baseline)"
            cells = [
                f"{x['n']:,}",
                kind,
                str(x.get("build_s", "-")),
                str(x.get("save_s", "-")),
                str(x.get("load_s", "-")),
                (
                    f"{_mb(x['rss_delta_bytes'])} ({_mb(x['rss_anon_delta_bytes'])} + "
                    f"{_mb(x['rss_file_delta_bytes'])})"
                    if real
                    else f"{_mb(x['n'] * x['resident_bytes_per_vector'])} (computed)"
                ),
                f"{x['resident_bytes_per_vector']:,.0f}",
                f"{x['vectors_per_gib_ram']:,}",
                _mb(x["disk_bytes"]) if real else "-",
                f"{x['vectors_per_gib_disk']:,}" if real else "-",
                str(x["latency_p50_ms"]),
                str(x.get("latency_p95_ms", "-")),
                f"{x['searches_per_cpu_s']:,}",
                str(x["recall_at_10"]),
                f"{r['index']['speedup_vs_flat']}x" if name == "index" else "1x",
            ]
            lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## Why these index types", ""]
    lines += [f"- n={r['index']['n']:,}: {r['index']['reason']}" for r in out["results"]]
    lines += [
        "",
        "Resident = RSS delta of a fresh process from before `load_snapshot_dir` to after the "
        "timed searches: anon (FAISS structures, id maps, a RAM re-rank store) + file-backed "
        "pages it touched. A disk-f16 re-rank store is read with pread, so its rows live in "
        "the shared page cache, not in the process: budget that cache (1M: the store file) "
        "for the machine, not per replica. Load = verifying every file's sha256 (twice: "
        "the snapshot's list and the index manifest) and opening the index. Save = "
        "everything after the build: index files, id maps, checksums, fsync, rename, pointer. "
        "Recall@10 is against the exact top-10 of the same base set. Flat at 1M: "
        + out["results"][-1]["flat_baseline"].get("how", "-")
        + ".",
        "Absolute times vary with the shared machine's load; compare rows of one run.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--queries", type=int, default=200, help="queries timed per size")
    ap.add_argument("--scratch", type=Path, default=Path(tempfile.gettempdir()) / "shoplens-scale")
    ap.add_argument("--keep-data", action="store_true", help="keep the generated base sets")
    ap.add_argument("--measure", nargs=3, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return
    args.scratch.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {msg}", flush=True)

    data = Data(model_dim())
    settings = Settings()
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        results.append(run_size(n, args.queries, args.scratch, data, log))
        if not args.keep_data:
            (args.scratch / f"scaling_base_{n}_{data.dim}.npy").unlink(missing_ok=True)
    out = {
        "sizes": args.sizes,
        "queries": args.queries,
        "dim": data.dim,
        "model": DEFAULT_MODEL,
        "exact_index_max": settings.exact_index_max,
        "budget_mb": settings.index_memory_budget_mb,
        "results": results,
        "wall_s": round(time.perf_counter() - start, 1),
        "machine": machine(),
    }
    j, m = write_results("scaling", out, markdown(out))
    print(markdown(out))
    print(f"wrote {j} and {m} in {out['wall_s']}s")


if __name__ == "__main__":
    main()
