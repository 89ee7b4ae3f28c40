"""Embedding speed and quality: torch eager (baseline) vs ONNX Runtime fp32 vs int8.

``python -m benchmarks.embed [--grocery G] [--model NAME] [--reps N] [--no-recall]``

For the configured model (its float32 base when an ``-int8`` name is set)
measures, on the same preprocessed grocery photos and in the same process:

- latency of one image (batch 1), and throughput at batch 32, for torch
  eager, ORT float32 and ORT int8 (static QDQ, :mod:`shoplens.models.quantize`).
  Backends take turns call by call, so load from other processes on a shared
  machine hits them alike and the ratios stay meaningful;
- Recall@1/5/10 of each backend on ``queries_val.csv`` against every
  ``catalog.csv`` image (exact search, product-level, the README's protocol).

Writes ``benchmarks/results/embed.json`` and ``embed.md``.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
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
from shoplens.models.base import FloatArray, ImageEmbedder
from shoplens.models.decode import decode_image
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.quantize import base_name, quantize_export
from shoplens.models.registry import export_model, load_torch_embedder

Embed = Callable[[FloatArray], FloatArray]


def prepare_all(embedder: ImageEmbedder, paths: list[Path]) -> FloatArray:
    """Decode (JPEG draft, as the service does) and preprocess every photo once."""
    draft = embedder.preprocess_config.resize
    arrays = [embedder.prepare(decode_image(p.read_bytes(), draft_size=draft)) for p in paths]
    return np.stack(arrays).astype(np.float32, copy=False)


def time_interleaved(
    backends: dict[str, Embed], batches: list[FloatArray], reps: int, budget_s: float
) -> dict[str, list[float]]:
    """Seconds per call of each backend, taking turns call by call (bounded by ``budget_s``)."""
    for fn in backends.values():  # warm-up: ORT allocates lazily, torch picks kernels
        fn(batches[0])
        fn(batches[0])
    times: dict[str, list[float]] = {name: [] for name in backends}
    deadline = time.monotonic() + budget_s
    for i in range(reps):
        batch = batches[i % len(batches)]
        for name, fn in backends.items():
            t = time.perf_counter()
            fn(batch)
            times[name].append(time.perf_counter() - t)
        if time.monotonic() > deadline:
            break
    return times


def cpu_ms_per_image(
    backends: dict[str, Embed], x: FloatArray, batch_sizes: tuple[int, ...], reps: int
) -> dict[str, dict[str, float]]:
    """CPU time of the calling thread per image (median of ``reps``), by batch size.

    Every backend here runs on one thread (the caller's), so this is the work
    an image costs, whatever else the machine is doing: the contention-proof
    counterpart of the wall-clock timings.
    """
    out: dict[str, dict[str, float]] = {}
    n = max(batch_sizes)
    for name, fn in backends.items():
        for b in batch_sizes:
            fn(x[:b])
        per_b: dict[str, float] = {}
        for b in batch_sizes:
            samples = []
            for _ in range(reps):
                t = time.thread_time()
                for i in range(0, n, b):
                    fn(x[i : i + b])
                samples.append((time.thread_time() - t) / n * 1e3)
            per_b[f"batch{b}"] = round(float(np.median(samples)), 3)
        out[name] = per_b
    return out


def summary_ms(samples: list[float]) -> dict[str, float]:
    a = np.asarray(samples) * 1e3
    return {
        "n": len(a),
        "median_ms": round(float(np.median(a)), 3),
        "p90_ms": round(float(np.percentile(a, 90)), 3),
        "min_ms": round(float(a.min()), 3),
        "mean_ms": round(float(a.mean()), 3),
    }


def recall_of(
    fn: Embed,
    catalog_x: FloatArray,
    catalog_pids: list[str],
    query_x: FloatArray,
    query_pids: list[str],
) -> dict[str, float]:
    """Exact search over every catalog vector, product-level Recall@K."""
    cat = np.concatenate([fn(catalog_x[i : i + 32]) for i in range(0, len(catalog_x), 32)])
    qv = np.concatenate([fn(query_x[i : i + 32]) for i in range(0, len(query_x), 32)])
    scores = qv @ cat.T
    top = np.argsort(-scores, axis=1)[:, :200]  # enough images to cover 10 distinct products
    hits = [
        recall_at_k([catalog_pids[j] for j in row], true)
        for row, true in zip(top, query_pids, strict=True)
    ]
    return mean_recall(hits)


def cached_recall(
    cache: Path, key: str, compute: Callable[[], dict[str, float]]
) -> dict[str, float]:
    """Recall is deterministic for one exported model: computed once, then read back."""
    path = cache / f"recall-{key}.json"
    if path.is_file():
        value: dict[str, float] = json.loads(path.read_text(encoding="utf-8"))
        return value
    value = compute()
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value), encoding="utf-8")
    return value


def run(
    grocery: Path, model: str | None, reps: int, budget_s: float, recall: bool, cache: Path
) -> dict[str, Any]:
    settings = Settings()
    if model:
        settings = settings.model_copy(update={"model": model})
    base = base_name(settings.model)
    fp32_dir = export_model(base, settings)
    int8_dir = quantize_export(fp32_dir, settings.model_cache_dir)
    fp32 = OnnxEmbedder(fp32_dir, threads=settings.ort_threads)
    int8 = OnnxEmbedder(int8_dir, threads=settings.ort_threads)
    int8_1 = OnnxEmbedder(int8_dir, threads=1)
    fp32_1 = OnnxEmbedder(fp32_dir, threads=1)
    eager = load_torch_embedder(base, settings)
    import torch

    torch_threads = torch.get_num_threads()

    def on_threads(n: int) -> Embed:
        # OpenMP's busy-wait barriers suffer badly when other processes share
        # the cores, so torch is measured at its default and at one thread and
        # the faster of the two is the baseline.
        def call(batch: FloatArray) -> FloatArray:
            torch.set_num_threads(n)
            return eager.embed_prepared(batch)

        return call

    backends: dict[str, Embed] = {
        f"torch eager fp32 ({torch_threads} threads)": on_threads(torch_threads),
        "torch eager fp32 (1 thread)": on_threads(1),
        "ORT fp32": fp32.embed_prepared,
        "ORT int8": int8.embed_prepared,
        "ORT int8 (1 thread)": int8_1.embed_prepared,
    }
    torch_names = [n for n in backends if n.startswith("torch")]
    recall_backends = {
        "torch eager fp32 (1 thread)": backends["torch eager fp32 (1 thread)"],
        "ORT fp32": fp32.embed_prepared,
        "ORT int8": int8.embed_prepared,
    }

    queries = read_csv(grocery / "queries_val.csv")
    catalog = read_csv(grocery / "catalog.csv")
    t = time.perf_counter()
    query_x = prepare_all(fp32, [grocery / r["image"] for r in queries])
    prep_s = time.perf_counter() - t
    singles = [query_x[i : i + 1] for i in range(min(len(query_x), 64))]
    batches32 = [query_x[i : i + 32] for i in range(0, len(query_x) - 31, 32)]

    one_thread: dict[str, Embed] = {
        "torch eager fp32": backends["torch eager fp32 (1 thread)"],
        "ORT fp32": fp32_1.embed_prepared,
        "ORT int8": int8_1.embed_prepared,
    }
    cpu = cpu_ms_per_image(one_thread, query_x[:32], (1, 4, 32), 3)
    b1 = time_interleaved(backends, singles, reps, budget_s)
    b32 = time_interleaved(backends, batches32, max(3, reps // 10), budget_s)

    rows: dict[str, dict[str, Any]] = {}
    base_b1 = min(float(np.median(b1[n])) for n in torch_names)
    base_b32 = min(float(np.median(b32[n])) for n in torch_names)
    for name in backends:
        med1 = float(np.median(b1[name]))
        med32 = float(np.median(b32[name]))
        rows[name] = {
            "batch1": summary_ms(b1[name]),
            "batch32": summary_ms(b32[name]),
            "batch32_images_per_s": round(32 / med32, 1),
            "speedup_batch1": round(base_b1 / med1, 2),
            "speedup_batch32": round(base_b32 / med32, 2),
        }

    if recall:
        catalog_x = prepare_all(fp32, [grocery / r["image"] for r in catalog])
        pids = [r["product_id"] for r in catalog]
        qpids = [r["product_id"] for r in queries]
        stamp = f"{fp32_dir.name}-{fp32.meta.get('created')}-{int8.meta.get('created')}"
        for name, fn in recall_backends.items():
            key = re.sub(r"[^A-Za-z0-9]+", "_", f"{stamp}-{name}")

            def compute(fn: Embed = fn) -> dict[str, float]:
                return recall_of(fn, catalog_x, pids, query_x, qpids)

            rows[name]["recall"] = cached_recall(cache, key, compute)
        rows[torch_names[0]]["recall"] = rows["torch eager fp32 (1 thread)"]["recall"]
        rows["ORT int8 (1 thread)"]["recall"] = rows["ORT int8"]["recall"]
        r1 = rows["ORT fp32"]["recall"]["R@1"]
        for row in rows.values():
            rec = dict(row["recall"])
            rec["delta_R@1_vs_fp32_points"] = round(100 * (rec["R@1"] - r1), 2)
            row["recall"] = rec

    return {
        "model": base,
        "configured_model": settings.model,
        "ort_threads": settings.ort_threads,
        "torch_threads": torch_threads,
        "baseline": "the faster torch eager configuration (median)",
        "int8": int8.meta.get("quantization"),
        "input_size": int(int8.preprocess_config.crop),
        "queries": len(queries),
        "catalog_images": len(catalog),
        "decode_preprocess_ms_per_query_photo": round(prep_s / len(queries) * 1e3, 3),
        "backends": rows,
        "cpu_ms_per_image_1_thread": cpu,
        "machine": machine(),
    }


def markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Embedding speed and quality",
        "",
        f"`python -m benchmarks.embed`, model `{res['model']}` "
        f"(configured: `{res['configured_model']}`), {res['machine']['at']}, "
        f"{res['machine']['cpus']} CPUs shared with other work. Pure inference on "
        f"preprocessed {res.get('input_size', 224)}x{res.get('input_size', 224)} grocery val "
        "photos; backends take turns call by call. "
        f"ORT intra-op threads: {res['ort_threads'] or 'ORT default (one per core)'}; "
        f"torch threads: {res['torch_threads']}.",
        "",
        "| backend | batch 1 median ms | batch 1 p90 ms | x vs best torch | batch 32 images/s "
        "| x vs best torch | R@1 | R@5 | R@10 | ΔR@1 vs fp32 (points) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in res["backends"].items():
        rec = row.get("recall", {})
        lines.append(
            f"| {name} | {row['batch1']['median_ms']:.1f} | {row['batch1']['p90_ms']:.1f} "
            f"| {row['speedup_batch1']:.2f}x | {row['batch32_images_per_s']:.1f} "
            f"| {row['speedup_batch32']:.2f}x | {rec.get('R@1', '-')} | {rec.get('R@5', '-')} "
            f"| {rec.get('R@10', '-')} | {rec.get('delta_R@1_vs_fp32_points', '-')} |"
        )
    cpu = res["cpu_ms_per_image_1_thread"]
    t1 = cpu["torch eager fp32"]["batch1"]
    lines += [
        "",
        "CPU time per image, one thread (the caller's), thread CPU clock: the work an image "
        "costs, unaffected by other processes on the machine. Also shows whether batching "
        "saves work (micro-batching in the service would only pay if it did):",
        "",
        "| backend | batch 1 CPU ms | batch 4 CPU ms/img | batch 32 CPU ms/img "
        "| x vs torch at batch 1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, c in cpu.items():
        lines.append(
            f"| {name} | {c['batch1']} | {c['batch4']} | {c['batch32']} "
            f"| {t1 / max(c['batch1'], 1e-9):.2f}x |"
        )
    q = res.get("int8") or {}
    lines += [
        "",
        f"int8: {q.get('method')} {q.get('format')}, weights {q.get('weights')}, activations "
        f"{q.get('activations')}, {q.get('calibration')} calibration on "
        f"{q.get('calibration_photos')} catalog photos (the demo catalog), mean cosine to "
        f"fp32 {q.get('cosine_to_float32')}.",
        f"Recall: {res['queries']} val queries against all {res['catalog_images']} catalog "
        "images, exact search, product-level (README protocol).",
        f"Decode (JPEG draft) + preprocess, outside these timings: "
        f"{res['decode_preprocess_ms_per_query_photo']} ms per val photo.",
        "Absolute times vary with the shared machine's load; the ratios are measured "
        "in the same run.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--model", default=None, help="default: the configured model")
    ap.add_argument("--reps", type=int, default=200, help="batch-1 calls per backend")
    ap.add_argument("--budget-s", type=float, default=120.0, help="time cap per timing loop")
    ap.add_argument("--no-recall", action="store_true", help="speed only")
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path("/tmp/shoplens-bench/embed"),
        help="recall of each exported model is kept here (it only changes with the model)",
    )
    args = ap.parse_args()
    res = run(args.grocery, args.model, args.reps, args.budget_s, not args.no_recall, args.cache)
    res["ks"] = list(KS)
    j, m = write_results("embed", res, markdown(res))
    print(markdown(res))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
