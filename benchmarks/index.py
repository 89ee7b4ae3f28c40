"""`shoplens index` speed on the grocery catalog: cold, then an incremental re-run.

``python -m benchmarks.index [--grocery G] [--work DIR] [--models A,B] [--naive N]``

Runs the real command (``shoplens index catalog.csv --data-dir D``, a
subprocess) into a fresh data dir, then again with nothing changed, and
reports images/s of each (wall clock of the whole command, process start and
model load included, and the run's own figure from its report). The
baseline, in the same run: a naive loop over the first ``N`` catalog images
(read, full-size decode, preprocess, float32 ORT at batch 1, one thread of
Python, nothing stored). Ratios: cold vs naive, incremental vs cold.

Writes ``benchmarks/results/index.json`` and ``index.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_GROCERY, machine, read_csv, write_results
from shoplens.config import Settings
from shoplens.models.decode import decode_image
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.quantize import base_name
from shoplens.models.registry import export_model


def shoplens_index(manifest: Path, data_dir: Path, model: str) -> dict[str, Any]:
    script = Path(sys.executable).parent / "shoplens"
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "shoplens.cli"]
    cmd = [*launcher, "index", str(manifest), "--data-dir", str(data_dir), "--model", model]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ), check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((data_dir / "last_run.json").read_text(encoding="utf-8"))
    images = int(report["indexed"]) + int(report["unchanged"])
    return {
        "summary": proc.stdout.strip().splitlines()[-1],
        "images": images,
        "indexed": report["indexed"],
        "unchanged": report["unchanged"],
        "rejected": report["rejected"],
        "wall_s": round(wall, 3),
        "wall_images_per_s": round(images / wall, 2),
        "cpu_s": round(cpu, 3),
        "images_per_cpu_s": round(images / cpu, 2),
        "run_s": report["seconds"],
        "run_images_per_s": report["images_per_s"],
        "embed_s": report["embed_seconds"],
    }


def naive(grocery: Path, model: str, n: int) -> dict[str, Any]:
    """The obvious loop: one image at a time, full decode, float32 model, batch 1."""
    settings = Settings()
    embedder = OnnxEmbedder(export_model(base_name(model), settings), threads=0)
    rows = read_csv(grocery / "catalog.csv")[:n]
    embedder.embed_prepared(
        embedder.prepare(decode_image((grocery / rows[0]["image"]).read_bytes()))[None]
    )
    t = time.perf_counter()
    c = time.process_time()
    for row in rows:
        image = decode_image((grocery / row["image"]).read_bytes())
        embedder.embed_prepared(embedder.prepare(image)[None])
    seconds = time.perf_counter() - t
    cpu = time.process_time() - c
    return {
        "images": len(rows),
        "seconds": round(seconds, 3),
        "images_per_s": round(len(rows) / seconds, 2),
        "cpu_s": round(cpu, 3),
        "images_per_cpu_s": round(len(rows) / cpu, 2),
    }


def run(grocery: Path, work: Path, models: list[str], naive_n: int) -> dict[str, Any]:
    manifest = grocery / "catalog.csv"
    base = naive(grocery, models[0], naive_n)
    runs: dict[str, Any] = {}
    for model in models:
        data_dir = work / f"data-{model}"
        shutil.rmtree(data_dir, ignore_errors=True)
        cold = shoplens_index(manifest, data_dir, model)
        warm = shoplens_index(manifest, data_dir, model)
        runs[model] = {
            "cold": cold,
            "incremental": warm,
            "cold_vs_naive_x": round(cold["wall_images_per_s"] / base["images_per_s"], 2),
            "cold_vs_naive_x_cpu": round(cold["images_per_cpu_s"] / base["images_per_cpu_s"], 2),
            "incremental_vs_cold_x_cpu": round(
                warm["images_per_cpu_s"] / cold["images_per_cpu_s"], 2
            ),
            "incremental_vs_cold_x_wall": round(
                warm["wall_images_per_s"] / cold["wall_images_per_s"], 2
            ),
            "incremental_vs_cold_x_run": round(
                warm["run_images_per_s"] / cold["run_images_per_s"], 2
            ),
        }
        shutil.rmtree(data_dir, ignore_errors=True)
    s = Settings()
    return {
        "catalog_images": len(read_csv(manifest)),
        "naive_baseline": base,
        "runs": runs,
        "settings": {
            "batch_size": s.batch_size,
            "decode_workers": s.decode_workers,
            "ort_threads": s.ort_threads,
        },
        "machine": machine(),
    }


def markdown(res: dict[str, Any]) -> str:
    b = res["naive_baseline"]
    lines = [
        "# `shoplens index` speed (grocery catalog)",
        "",
        f"`python -m benchmarks.index`, {res['machine']['at']}, {res['machine']['cpus']} CPUs "
        f"shared with other work; {res['catalog_images']} catalog images; settings "
        f"{res['settings']}. Wall = the whole command (process start, model load, snapshot "
        "publish). CPU = user + system seconds of the command (all its threads): the work, "
        "which other processes on the machine do not change; 2 x images per CPU-second "
        "bounds what 2 dedicated cores would do.",
        "",
        "| model | run | indexed | unchanged | wall s | images/s (wall) | CPU s "
        "| images per CPU-s | x vs naive (wall / CPU) | x vs cold (wall / CPU) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| naive loop (baseline) | {b['images']} images | - | - | {b['seconds']} "
        f"| {b['images_per_s']} | {b['cpu_s']} | {b['images_per_cpu_s']} | 1.00x | - |",
    ]
    for model, r in res["runs"].items():
        c, w = r["cold"], r["incremental"]
        lines.append(
            f"| {model} | cold | {c['indexed']} | {c['unchanged']} | {c['wall_s']} "
            f"| {c['wall_images_per_s']} | {c['cpu_s']} | {c['images_per_cpu_s']} "
            f"| {r['cold_vs_naive_x']}x / {r['cold_vs_naive_x_cpu']}x | - |"
        )
        lines.append(
            f"| {model} | incremental, nothing changed | {w['indexed']} | {w['unchanged']} "
            f"| {w['wall_s']} | {w['wall_images_per_s']} | {w['cpu_s']} "
            f"| {w['images_per_cpu_s']} | - "
            f"| {r['incremental_vs_cold_x_wall']}x / {r['incremental_vs_cold_x_cpu']}x |"
        )
    lines += [
        "",
        "Naive baseline: read, full-size decode, preprocess, float32 ONNX Runtime at "
        "batch 1, one image at a time, nothing stored (in-process: no start-up cost).",
        "Absolute numbers vary with the shared machine's load; compare rows of one run.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shoplens-bench/index"))
    ap.add_argument("--models", default="", help="comma-separated; default: the configured model")
    ap.add_argument("--naive", type=int, default=200, help="images in the naive baseline loop")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m] or [Settings().model]
    res = run(args.grocery, args.work, models, args.naive)
    j, m = write_results("index", res, markdown(res))
    print(markdown(res))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
