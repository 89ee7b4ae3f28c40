"""Helpers shared by the benchmarks: paths, the grocery protocol's metric, result files."""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_GROCERY = REPO.parent / "shared" / "data" / "grocery"
KS = (1, 5, 10)


def recall_at_k(
    ranked_product_ids: Sequence[str], true_product_id: str, ks: Iterable[int] = KS
) -> dict[int, bool]:
    """The grocery README's protocol: dedup the ranking by product, keep best rank."""
    distinct = list(dict.fromkeys(ranked_product_ids))
    return {k: true_product_id in distinct[:k] for k in ks}


def mean_recall(hits: Sequence[dict[int, bool]], ks: Iterable[int] = KS) -> dict[str, float]:
    """Micro average over queries: ``{"R@1": ..., "R@5": ..., "R@10": ...}``."""
    n = max(1, len(hits))
    return {f"R@{k}": round(sum(h[k] for h in hits) / n, 4) for k in ks}


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_results(name: str, data: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``results/<name>.json`` and ``results/<name>.md``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    j = RESULTS / f"{name}.json"
    m = RESULTS / f"{name}.md"
    j.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    m.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return j, m


# ---------------------------------------------------------------- studio-catalog runs


def studio_parser(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark on the grocery studio catalog."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--queries", default="queries_val.csv", help="or catalog_train (dev set)")
    ap.add_argument("--step", type=int, default=1, help="use every n-th query")
    ap.add_argument("--data-dir", type=Path, default=None, help="default: a temporary dir")
    return ap


def run_studio(
    args: argparse.Namespace,
    name: str,
    run: Callable[[Path], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
) -> None:
    """``run(data_dir)`` in ``--data-dir`` or a temporary one; results saved as ``name``
    (``name_<queries>`` for other queries than the val photos) and printed."""
    if not (args.grocery / "catalog_studio.csv").is_file():
        raise SystemExit(f"no grocery data at {args.grocery} (use --grocery)")
    tmp = None if args.data_dir else tempfile.mkdtemp(prefix=f"shoplens-{name}-")
    try:
        result = run(args.data_dir or Path(str(tmp)))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.queries != "queries_val.csv":
        name += "_" + Path(args.queries).stem
    md = markdown(result)
    j, m = write_results(name, result, md)
    print(md)
    print(f"wrote {j} and {m}")
