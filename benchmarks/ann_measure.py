"""Measuring a saved vector index in the process that loads it: resident memory,
queries per second (threads, CPU time, batches), recall@10, filtered search and
a sweep of the search knobs.

Imported by :mod:`benchmarks.ann`, whose ``--measure`` runs :func:`measure_saved`
in a fresh child process; run that, not this.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from benchmarks.ann_data import K
from shoplens.indexer.vectors.index import VectorIndex


def rss() -> dict[str, int]:
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
    before = rss()
    t = time.perf_counter()
    idx = VectorIndex.load(directory)
    load_s = time.perf_counter() - t
    after_load = rss()
    faiss.omp_set_num_threads(2)
    _, found = idx.search(q, K)  # also warms what the queries touch
    rec = _recall(found, gt_ids)
    after_queries = rss()
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
    end = rss()
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
