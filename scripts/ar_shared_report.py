"""Run every asset of ../shared/data/ar (or DIR) through the AR pipeline and print a table.

usage: python scripts/ar_shared_report.py [DIR] [--json OUT.json]

Columns: accepted/rejected (and why), triangles, dimensions in metres, original
bytes -> mobile bytes, the USD checker's verdict on the USDZ, and the Khronos
validator's error count on the mobile variant. A folder is zipped first, as an
operator would upload it.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from shoplens.ar_assets.service import ArService
from shoplens.config import Settings
from shoplens.errors import ShoplensError

PLACEMENT = {"SunglassesKhronos": "face", "MaterialsVariantsShoe": "foot"}


def _upload_path(src: Path, tmp: Path) -> Path:
    if not src.is_dir():
        return src
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.iterdir()):
            z.write(f, f"{src.name}/{f.name}")
    out = tmp / f"{src.name}.zip"
    out.write_bytes(buf.getvalue())
    return out


def run(folder: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        ar = ArService.open(Settings(data_dir=tmp / "data"))
        for src in sorted(folder.iterdir()):
            if src.suffix.lower() in (".md", ".txt"):
                continue
            up = _upload_path(src, tmp)
            placement = PLACEMENT.get(src.stem.split("_")[0], "floor")
            row: dict[str, Any] = {
                "file": src.name,
                "placement": placement,
                "upload_bytes": up.stat().st_size,
            }
            try:
                stored, report = ar.ingest(src.stem.replace(" ", "_"), up, placement=placement)
            except ShoplensError as exc:
                row.update(accepted=False, status=exc.status, reason=exc.message[:150])
                rows.append(row)
                continue
            s = report.stats
            row.update(
                accepted=True,
                triangles=stored.triangles,
                dimensions_m=stored.dims,
                bytes=stored.bytes,
                mobile_bytes=stored.mobile_bytes,
                usdz_check=s.get("usdz_check"),
                usdz_bytes=s.get("usdz_bytes"),
                mobile_khronos_errors=s.get("mobile_khronos_errors"),
                mobile_triangles=s.get("mobile_triangles"),
                warnings=sorted({w.code for w in report.warnings}),
                material_variants=stored.material_variants,
            )
            rows.append(row)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    out = [
        "| file | result | triangles | dims m (x, y, z) | bytes -> mobile | USDZ check "
        "| Khronos errors (mobile) |",
        "|---|---|---:|---|---|---|---:|",
    ]
    for r in rows:
        if not r["accepted"]:
            out.append(f"| {r['file']} | rejected {r['status']}: {r['reason']} | | | | | |")
            continue
        d = r["dimensions_m"]
        mobile = r["mobile_khronos_errors"]
        out.append(
            f"| {r['file']} | accepted | {r['triangles']:,} | "
            f"{d['x']:.3f}, {d['y']:.3f}, {d['z']:.3f} | {r['bytes']:,} -> {r['mobile_bytes']:,}"
            f" | {r['usdz_check']} | {'n/a' if mobile is None else mobile} |"
        )
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser()
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "ar"
    p.add_argument("folder", nargs="?", type=Path, default=default)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    if not args.folder.is_dir():
        print(f"no such folder: {args.folder}", file=sys.stderr)
        return 2
    rows = run(args.folder)
    print(table(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
