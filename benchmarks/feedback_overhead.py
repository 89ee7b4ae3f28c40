"""What logging every search for feedback costs: ``POST /v1/search`` latency at
concurrency 1 before and after, in the same run, on the same photos and index.

``python -m benchmarks.feedback_overhead [--base REV] [--work DIR] [--count N] [--rounds R]
[--database-url postgresql://...]``

The protocol of ``benchmarks.search_http`` at c=1 (its 2 MP phone JPEGs, the
grocery catalog indexed with the default model, a ``shoplens serve``
subprocess on 127.0.0.1, its httpx load generator), for three servers on one
data dir:

- ``before``: the code of ``--base`` (default: the merge base with ``main``),
  exported with ``git archive`` and put first on ``PYTHONPATH``; it logs nothing;
- ``after, learning off`` (the default): every answer gets a ``search_id``
  and one row in ``feedback.db``;
- ``after, learning on``: also the query vector, and the upload held in memory
  for a confirmation (nothing in this benchmark confirms).

In process, the search path's own cost of logging one search, in the same run:
``inline`` is what it was up to the previous release (one INSERT on the
request thread, ``FeedbackStore.record_search``), ``queued`` what it is now
(``FeedbackBook.new_search``: the row handed to the background writer), on
SQLite and, with ``--database-url`` (a scratch database: rows are added to
it), on PostgreSQL, where the inline INSERT is a network round trip and a
commit per search.

Servers are measured in turn, ``--rounds`` times each (interleaved, so load
from other work on the shared machine falls on all of them alike), and the
latencies of all rounds pooled. Writes ``benchmarks/results/feedback_overhead.json``
and ``.md``.
"""

from __future__ import annotations

import argparse
import subprocess
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DEFAULT_GROCERY, REPO, machine, write_results
from benchmarks.loadgen import run_load, serve
from benchmarks.search_http import ensure_index, make_phone_photos
from shoplens.config import Settings


def export_base(rev: str, target: Path) -> str:
    """The ``shoplens`` package of ``rev`` under ``target``; the full commit id."""
    sha = subprocess.run(
        ["git", "rev-parse", rev], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.strip()
    tree = target / sha[:12]
    if not (tree / "shoplens").is_dir():
        data = subprocess.run(
            ["git", "archive", "--format=tar", sha, "shoplens"],
            cwd=REPO,
            check=True,
            capture_output=True,
        ).stdout
        tree.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=BytesIO(data)) as tar:
            tar.extractall(tree, filter="data")
    return sha


def _median_us(t: list[float]) -> float:
    return round(float(np.median(t)) * 1e6, 1)


def log_paths(tmp: Path, database_url: str | None, reps: int) -> dict[str, float]:
    """Median µs per search on the search path: ``inline`` (one INSERT on the calling
    thread, as before) and ``queued`` (``new_search`` now), on one backend."""
    from pydantic import SecretStr

    from shoplens.indexer.feedback.book import FeedbackBook
    from shoplens.indexer.feedback.store import new_search_id

    secret = None if database_url is None else SecretStr(database_url)
    book = FeedbackBook(Settings(data_dir=tmp, database_url=secret))
    shown = [f"product-{i}" for i in range(10)]
    inline: list[float] = []
    queued: list[float] = []
    try:
        for _ in range(reps):  # interleaved: machine load falls on both alike
            sid = new_search_id(time.time())
            t0 = time.perf_counter()
            book.store.record_search(sid, time.time(), shown)
            inline.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            book.new_search(shown)
            queued.append(time.perf_counter() - t0)
    finally:
        book.close()
    return {"inline_us": _median_us(inline), "queued_us": _median_us(queued)}


def in_process(
    payloads: list[bytes], reps: int = 300, database_url: str | None = None
) -> dict[str, Any]:
    """Median microseconds of logging one search (``FeedbackBook.new_search``), the
    inline-versus-queued search path per backend, and milliseconds of keeping one
    confirmed photo (decode and re-encode, in the feedback request)."""
    from shoplens.indexer.feedback import photos
    from shoplens.indexer.feedback.book import FeedbackBook
    from shoplens.models.decode import decode_image

    shown = [f"product-{i}" for i in range(10)]
    vector = np.random.default_rng(0).normal(size=3168).astype(np.float32)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for learn in (False, True):
            book = FeedbackBook(Settings(data_dir=Path(tmp), learn_from_feedback=learn))
            t: list[float] = []
            try:
                for i in range(reps):
                    t0 = time.perf_counter()
                    book.new_search(
                        shown, model="m", vector=vector, photo=payloads[i % len(payloads)]
                    )
                    t.append(time.perf_counter() - t0)
            finally:
                book.close()
            key = "learning_on" if learn else "learning_off"
            out[f"log_search_us_{key}"] = round(float(np.median(t)) * 1e6, 1)
    paths: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths["sqlite"] = log_paths(Path(tmp), None, reps)
    if database_url:
        with tempfile.TemporaryDirectory() as tmp:
            paths["postgres"] = log_paths(Path(tmp), database_url, reps)
    out["search_path"] = paths
    keep = []
    for i in range(48):
        t0 = time.perf_counter()
        image = decode_image(payloads[i % len(payloads)], draft_size=photos.DRAFT_SIDE)
        photos.reencode(image)
        keep.append(time.perf_counter() - t0)
    out["keep_photo_ms"] = round(float(np.median(keep)) * 1e3, 2)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    work: Path = args.work
    base_rev = (
        args.base
        or subprocess.run(
            ["git", "merge-base", "HEAD", "main"],
            cwd=REPO,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    base_sha = export_base(base_rev, work / "base")
    base_tree = work / "base" / base_sha[:12]
    photos = make_phone_photos(args.grocery, work / "phone", args.photos)
    payloads = [p.read_bytes() for p in photos]
    model = Settings().model
    data = work / f"data-{model}"
    index = ensure_index(args.grocery, data, model)
    configs = {
        "before": {"PYTHONPATH": str(base_tree)},
        "after, learning off": {"PYTHONPATH": str(REPO)},
        "after, learning on": {"PYTHONPATH": str(REPO), "SHOPLENS_LEARN_FROM_FEEDBACK": "true"},
    }
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    lat: dict[str, list[float]] = {k: [] for k in configs}
    took: dict[str, list[float]] = {k: [] for k in configs}
    errors = dict.fromkeys(configs, 0)
    for r in range(args.rounds):
        for name, env in configs.items():
            log = work / f"serve-{name.replace(' ', '_').replace(',', '')}-{r}.log"
            with serve(data, env, log) as server:
                url = f"{server.base}/v1/search"
                run_load(url, payloads, concurrency=1, count=16, time_limit_s=30)  # warm-up
                cpu0 = server.cpu_s()
                res = run_load(url, payloads, concurrency=1, count=args.count, time_limit_s=60)
                cpu[name].append((server.cpu_s() - cpu0) * 1e3 / max(1, res.requests))
            lat[name] += res.latencies_ms
            took[name] += res.server_ms
            errors[name] += res.errors
            print(name, r, res.summary(), flush=True)
    out: dict[str, Any] = {}
    for name in configs:
        a = np.asarray(lat[name])
        out[name] = {
            "requests": len(a),
            "errors": errors[name],
            "p50_ms": round(float(np.percentile(a, 50)), 2),
            "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2),
            "server_took_p50_ms": round(float(np.percentile(took[name], 50)), 2),
            # CPU the server spent per request (/proc), background threads included:
            # what other processes on the shared machine do not change.
            "server_cpu_ms_per_request": round(float(np.median(cpu[name])), 2),
        }
    return {
        "base": base_sha,
        "model": model,
        "index": index,
        "photos": len(payloads),
        "rounds": args.rounds,
        "servers": out,
        "in_process": in_process(payloads, database_url=args.database_url),
        "machine": machine(),
    }


def markdown(res: dict[str, Any]) -> str:
    before = res["servers"]["before"]
    lines = [
        "# Search logging for feedback: POST /v1/search at concurrency 1",
        "",
        f"`python -m benchmarks.feedback_overhead`, {res['machine']['at']}, "
        f"{res['machine']['cpus']} CPUs shared with other work; model `{res['model']}`, grocery "
        f"catalog indexed, {res['photos']} 2 MP phone JPEGs (the search_http protocol). "
        f"`before` is commit {res['base'][:10]} (`--base`); {res['rounds']} interleaved "
        "rounds per server, latencies pooled.",
        "",
        "| server | requests | errors | p50 ms | p95 ms | p99 ms | server took_ms p50 "
        "| server CPU ms/request | p95 vs before |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in res["servers"].items():
        delta = round(s["p95_ms"] - before["p95_ms"], 2)
        lines.append(
            f"| {name} | {s['requests']} | {s['errors']} | {s['p50_ms']} | {s['p95_ms']} "
            f"| {s['p99_ms']} | {s['server_took_p50_ms']} | {s['server_cpu_ms_per_request']} "
            f"| {delta:+} ms |"
        )
    ip = res["in_process"]
    lines += [
        "",
        f"In-process, one at a time: logging a search takes {ip['log_search_us_learning_off']} "
        f"µs with learning off and {ip['log_search_us_learning_on']} µs with it on (the "
        "vector in the row, the upload held in memory); keeping a confirmed photo (JPEG "
        f"draft decode, 640 px re-encode, in the feedback request) {ip['keep_photo_ms']} ms.",
        "",
        "The search path's cost of logging a search, before (one INSERT on the request "
        "thread) and now (the row handed to the background writer, committed in batches "
        "every ~0.1 s), same run, median of interleaved calls:",
        "",
        "| database | inline INSERT µs (before) | queued µs (now) |",
        "|---|---:|---:|",
    ]
    for backend, v in ip.get("search_path", {}).items():
        lines.append(f"| {backend} | {v['inline_us']} | {v['queued_us']} |")
    lines += [
        "",
        "Absolute numbers move with the shared machine's load; compare rows of one run.",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shoplens-bench/feedback_overhead"))
    ap.add_argument("--base", default=None, help="git revision of the 'before' server")
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--count", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument(
        "--database-url", default=None, help="also measure the search log on this PostgreSQL"
    )
    args = ap.parse_args()
    res = run(args)
    j, m = write_results("feedback_overhead", res, markdown(res))
    print(markdown(res))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
