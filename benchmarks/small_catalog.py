"""A shop's first index: ten photos of five products with the default model, before and after.

``python -m benchmarks.small_catalog [--work DIR] [--repeat N]``

Each row runs the real command (``shoplens index catalog.csv``, a fresh
process and data dir) on the same ten generated photos and reports its wall
clock, the run's own seconds, the embedding's and the adaptation fit's:

- ``before``: the catalog adaptation as it was fitted before the span path
  covered small catalogs (the default asks for 32 output dims, more than ten
  photos span, so it solved the full 3168 x 3168 problem: two
  eigendecompositions). Reproduced in the same run by swapping that fit in.
- ``after``: the fit in the photos' span (``shoplens.models.adapt``).
- ``after, empty model cache``: the same with ``SHOPLENS_MODEL_CACHE_DIR``
  empty, i.e. the model shipped in the package (before it, an empty cache
  meant a 1-3 minute export that needed torch).

Writes ``benchmarks/results/small_catalog.json`` and ``small_catalog.md``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageEnhance

from benchmarks.common import REPO, machine, write_results

PRODUCTS, SHOTS = 5, 2

# Run in the child process for the "before" row: the previous fit, swapped in.
_BEFORE = """
import sys, time
import numpy as np
from shoplens.models import adapt
from shoplens.models.base import l2_normalise
import shoplens.indexer.serving.adaptation as policy

def previous_fit(vectors, product_ids, *, method="lda"):
    x = l2_normalise(np.asarray(vectors, np.float32)).astype(np.float64)
    names = sorted(set(product_ids))
    if len(names) < 2 or len(x) < 2 * len(names):
        return None
    labels = np.array([names.index(p) for p in product_ids])
    keep = max(len(names) - 1, 32)
    mean = x.mean(axis=0)
    class_means = np.stack([x[labels == j].mean(axis=0) for j in range(len(names))])
    within = x - class_means[labels]
    tau = float(np.einsum("ij,ij->", within, within)) / x.shape[0] / x.shape[1]
    t0 = time.perf_counter()
    matrix = adapt._lda_axes(within, class_means - mean, tau, 0.3, 1.0, keep)
    params = {"shrinkage": 0.3, "beta": 1.0, "dim": keep}
    facts = {"kind": method, "params": params, "training_seconds": time.perf_counter() - t0,
             "n_images": len(x), "n_products": len(names), "dim_in": x.shape[1], "dim_out": keep}
    return adapt.Adaptation(method, params, mean.astype(np.float32),
                            matrix.astype(np.float32), facts)

policy.fit_adaptation = previous_fit
from shoplens.cli import main
sys.argv = ["shoplens", *sys.argv[1:]]
main()
"""
_AFTER = """
import sys
from shoplens.cli import main
sys.argv = ["shoplens", *sys.argv[1:]]
main()
"""


def product_photo(product: int, shot: int, size: int = 320) -> Image.Image:
    """A generated product shot: coloured shapes on a gradient; a second shot of the
    same product is moved, lit and cropped differently."""
    rnd = random.Random(product)
    top = tuple(rnd.randrange(256) for _ in range(3))
    img = Image.new("RGB", (size, size), top)
    draw = ImageDraw.Draw(img)
    for _ in range(rnd.randint(3, 6)):
        x0, y0 = rnd.randrange(size - 80), rnd.randrange(size - 80)
        box = (x0, y0, x0 + rnd.randint(40, 200), y0 + rnd.randint(40, 200))
        fill = tuple(rnd.randrange(256) for _ in range(3))
        (draw.ellipse if rnd.random() < 0.5 else draw.rectangle)(box, fill=fill)
    if shot:
        shift = 12 * shot
        img = img.crop((shift, shift, size - shift // 2, size - shift // 2)).resize((size, size))
        img = ImageEnhance.Brightness(img).enhance(1.0 + 0.15 * shot)
    return img


def write_catalog(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for p in range(PRODUCTS):
        for s in range(SHOTS):
            name = f"p{p}_{s}.jpg"
            product_photo(p, s).save(folder / name, quality=90)
            rows.append({"product_id": f"p{p}", "image": name, "title": f"Product {p}"})
    manifest = folder / "catalog.csv"
    with manifest.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def index_once(code: str, manifest: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    data = Path(tempfile.mkdtemp(prefix="data-", dir=work))
    cmd = [sys.executable, "-c", code, "index", str(manifest), "--data-dir", str(data)]
    t = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, check=False)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"shoplens index failed ({proc.returncode}): {proc.stderr[-2000:]}")
    report = json.loads((data / "last_run.json").read_text(encoding="utf-8"))
    snapshot = data / "snapshots" / report["snapshot_id"]
    facts = json.loads((snapshot / "facts.json").read_text(encoding="utf-8"))
    adaptation = facts.get("adaptation") or {}
    return {
        "wall_s": round(wall, 2),
        "run_s": report["seconds"],
        "embed_s": report["embed_seconds"],
        "fit_s": adaptation.get("fit_seconds"),
        "dim_out": adaptation.get("dim_out"),
        "indexed": report["indexed"],
    }


def run(work: Path, repeat: int) -> dict[str, Any]:
    manifest = write_catalog(work / "catalog")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    empty = dict(env, SHOPLENS_MODEL_CACHE_DIR=str(work / "empty-model-cache"))
    rows = {
        "before (full 3168-d fit)": (_BEFORE, env),
        "after (fit in the photos' span)": (_AFTER, env),
        "after, empty model cache (packaged model)": (_AFTER, empty),
    }
    out: dict[str, Any] = {}
    for label, (code, variant_env) in rows.items():
        runs = [index_once(code, manifest, work, variant_env) for _ in range(repeat)]
        out[label] = {
            "runs": runs,
            **{
                f"median_{k}": statistics.median(float(r[k] or 0) for r in runs)
                for k in ("wall_s", "run_s", "embed_s", "fit_s")
            },
            "dim_out": runs[0]["dim_out"],
        }
    return {"photos": PRODUCTS * SHOTS, "products": PRODUCTS, "repeat": repeat, "rows": out}


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    lines = [
        f"# Small catalog: {res['photos']} photos of {res['products']} products, default model",
        "",
        f"`python -m benchmarks.small_catalog`; {m['cpus']} CPUs, Python {m['python']}, "
        f"{m['at']}; median of {res['repeat']} runs of `shoplens index` each (a fresh "
        "process and data dir), all rows in the same run.",
        "",
        "| | wall s | run s | embedding s | adaptation fit s | adapted dims |",
        "|---|---|---|---|---|---|",
    ]
    for label, row in res["rows"].items():
        lines.append(
            f"| {label} | {row['median_wall_s']:.2f} | {row['median_run_s']:.2f} | "
            f"{row['median_embed_s']:.2f} | {row['median_fit_s']:.3f} | {row['dim_out']} |"
        )
    lines += [
        "",
        "wall: the whole command (process start, imports, model load); run: the run's "
        "own seconds (its report).",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="shoplens-small-"))
    res = run(work, max(1, args.repeat))
    res["machine"] = machine()
    j, m = write_results("small_catalog", res, markdown(res))
    print(markdown(res))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
