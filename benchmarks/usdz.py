"""USDZ fidelity costs (issue #15): per-variant USDZs and vertex-based sizes.

``python -m benchmarks.usdz [--repeat N]``

For each model of ../shared/data/ar that has geometry Shoplens can read (skipped
without it) and a generated variants box, decodes it once to a plain GLB
(``optimise.decompress``), then times, best of N:

- ``default_s``: one USDZ, the default materials: the baseline, what an upload
  cost before (one USDZ whatever the variants);
- ``all_s``: the default USDZ plus one per ``KHR_materials_variants`` entry, what
  an upload costs now;
- ``bounds_accessor_ms`` (the baseline: accessor min/max corners, as the first
  measure does) and ``bounds_vertices_ms`` (every vertex in world space).

Writes ``benchmarks/results/usdz.json`` and ``usdz.md``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import REPO, machine, write_results
from shoplens.ar_assets import optimise
from shoplens.ar_assets.anchoring import HORIZONTAL_PLANE
from shoplens.ar_assets.gltf import world_bounds
from shoplens.ar_assets.usdz import read_glb
from shoplens.ar_assets.usdz.variants import convert_all
from shoplens.ar_assets.validation.commerce import _bounds, variant_names

SHARED_AR = REPO.parent / "shared" / "data" / "ar"
MODELS = ("SheenChair.glb", "WaterBottle.glb", "BoomBox.glb", "ChessBoard.glb")


def best(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(name: str, glb: Path, work: Path, repeat: int) -> dict[str, Any]:
    plain = work / f"{glb.stem}.plain.glb"
    optimise.decompress(glb, plain)
    g = read_glb(plain)
    names = variant_names(g)
    n = iter(range(10_000))

    def one(variants: list[str]) -> None:
        out = work / f"{glb.stem}-run{next(n)}"
        out.mkdir()
        convert_all(plain, out, HORIZONTAL_PLANE, variants)

    original = read_glb(glb)
    return {
        "model": name,
        "variants": len(names),
        "default_s": round(best(lambda: one([]), repeat), 3),
        "all_s": round(best(lambda: one(names), repeat), 3),
        "bounds_accessor_ms": round(1000 * best(lambda: _bounds(original), repeat), 2),
        "bounds_vertices_ms": round(1000 * best(lambda: world_bounds(g), repeat), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-usdz-") as tmp:
        work = Path(tmp)
        from tests.ar_assets.models import variants_glb

        box = work / "variants-box.glb"
        box.write_bytes(variants_glb())
        models = [("variants box (generated)", box)]
        models += [(m, SHARED_AR / m) for m in MODELS if (SHARED_AR / m).is_file()]
        for name, path in models:
            rows.append(measure(name, path, work, args.repeat))
            print(rows[-1], flush=True)
    lines = [
        "# USDZ fidelity costs (`python -m benchmarks.usdz`)",
        "",
        "Best of the repeats on this machine; baselines measured in the same run: one "
        "USDZ (before: variants shared it) and accessor-corner bounds (before: the only measure).",
        "",
        "| model | variants | 1 USDZ (s, baseline) | all USDZs (s) | "
        "bounds, accessors (ms, baseline) | bounds, vertices (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['variants']} | {r['default_s']} | {r['all_s']} | "
            f"{r['bounds_accessor_ms']} | {r['bounds_vertices_ms']} |"
        )
    data = {"machine": machine(), "repeat": args.repeat, "models": rows}
    print("\n".join(lines))
    write_results("usdz", data, "\n".join(lines))


if __name__ == "__main__":
    main()
