"""Command-line commands of this part (registered by shoplens.cli).

Heavy modules (numpy, FAISS, ONNX Runtime) are imported inside the commands
so that ``shoplens --help`` stays fast.
"""

from __future__ import annotations

import json
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings
from shoplens.indexer.ops.learn_commands import learn

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.types import Hit
    from shoplens.indexer.serving.look.finder import Region


def _quiet_libraries() -> None:
    """FAISS logs its CPU-feature probing at INFO; a command's output is not the place."""
    import logging

    logging.getLogger("faiss").setLevel(logging.WARNING)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def hit_dict(hit: Hit) -> dict[str, Any]:
    """A search hit with the public result fields (``image_url`` is the service's)."""
    p = hit.product
    return {
        "product_id": p.product_id,
        "score": round(hit.score, 6),
        "title": p.title,
        "category": p.category,
        "price": p.price,
        "currency": p.currency,
        "in_stock": p.in_stock,
        "image_id": hit.image_id,
    }


class Engine(StrEnum):
    local = "local"
    ray = "ray"


def _age(created_at: str) -> str:
    from datetime import UTC, datetime

    try:
        then = datetime.fromisoformat(created_at)
    except ValueError:
        return "unknown"
    s = int((datetime.now(UTC) - then).total_seconds())
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}min"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def index(
    manifest: Annotated[Path, typer.Argument(help="CSV or JSON Lines catalog manifest.")],
    prune: Annotated[
        bool, typer.Option("--prune", help="Delete products absent from the manifest.")
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="Embedding model (default: configured).")
    ] = None,
    engine: Annotated[
        Engine | None,
        typer.Option(
            "--engine", help="Where decoding + embedding run (default: configured, local)."
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address", help="Ray cluster address, e.g. ray://head:10001 (--engine ray)."
        ),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Index a catalog manifest (incremental, resumable) and publish a snapshot."""
    from shoplens.indexer.ops.build import remote_fetch, run_index

    settings = make_settings(
        data_dir,
        index_engine=None if engine is None else engine.value,
        ray_address=ray_address,
    )
    _quiet_libraries()
    with remote_fetch(settings) as hook:
        report = run_index(settings, manifest, prune=prune, model=model, progress=True, fetch=hook)
    _prune_fetch_cache(settings)
    typer.echo(report.summary_line())
    if report.rejects_path:
        typer.echo(f"rejected rows are listed in {report.rejects_path}", err=True)


def _prune_fetch_cache(settings: Settings) -> None:
    """Downloads of this run may have taken the fetch cache past its budget."""
    from shoplens.files.disk_lru import MIB
    from shoplens.indexer.sources.fetch_cache import FetchCache

    if settings.fetch_cache_dir.is_dir():
        FetchCache(settings.fetch_cache_dir).prune(settings.fetch_cache_max_mb * MIB)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be deleted; delete nothing.")
    ] = False,
    grace_s: Annotated[
        float | None,
        typer.Option(
            "--grace-s",
            min=0,
            help="Keep unreferenced photos and embeddings written less than this many "
            "seconds ago (default: SHOPLENS_GC_GRACE_S, 3600).",
        ),
    ] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Delete photos and embeddings nothing references any more; trim the caches to budget."""
    from dataclasses import asdict

    from shoplens.indexer.ops.gc import collect_garbage

    settings = make_settings(data_dir)
    report = collect_garbage(settings, dry_run=dry_run, grace_s=grace_s)
    if as_json:
        out = {**asdict(report), "bytes_freed": report.bytes_freed}
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo("\n".join(report.lines()))


def search(
    image: Annotated[
        Path | None, typer.Argument(help="A photo of the product to look for.")
    ] = None,
    text: Annotated[
        str | None,
        typer.Option(
            "--text",
            help="Words to match against titles, categories, attributes and descriptions; "
            "with IMAGE, only products matching them are ranked by the photo.",
        ),
    ] = None,
    k: Annotated[int, typer.Option("--k", min=1, max=100, help="How many products.")] = 10,
    regions: Annotated[
        bool,
        typer.Option(
            "--regions",
            help="Also find the separate products in the photo (a room, a shelf, an "
            "outfit) and print each region (box as fractions x,y,w,h) with its products.",
        ),
    ] = False,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Search the index with a photo, with words, or with a photo refined by words."""
    from shoplens.errors import BadParameter, SnapshotError
    from shoplens.indexer.catalog.types import SearchFilters
    from shoplens.indexer.serving.live import LiveIndex
    from shoplens.indexer.serving.look.finder import find_regions
    from shoplens.indexer.serving.snapshot import current_id, read_facts
    from shoplens.models.decode import decode_image
    from shoplens.models.registry import load_embedder

    settings = make_settings(data_dir)
    words = (text or "").strip() or None
    if image is None and words is None:
        raise BadParameter("give a photo (IMAGE), words (--text WORDS), or both")
    if regions and image is None:
        raise BadParameter("--regions needs a photo (IMAGE)")
    t0 = time.perf_counter()
    img = None
    if image is not None:
        try:
            data = image.read_bytes()
        except OSError as exc:
            raise BadParameter(f"cannot read {image}: {exc.strerror}") from None
        # Decode first: a bad photo is reported before any model or index is loaded.
        img = decode_image(data, max_pixels=settings.max_image_pixels)
    _quiet_libraries()
    if img is None:
        # Words alone need no model: open the published snapshot whatever made it.
        cur = current_id(settings)
        if cur is None:
            raise SnapshotError(f"no index in {settings.data_dir}: run `shoplens index MANIFEST`")
        model = str(read_facts(settings.snapshots_dir / cur)["model"])
        embedder = None
    else:
        embedder = load_embedder(settings)
        model = embedder.name
    live = LiveIndex.open(settings, model)
    found: list[Region] = []
    try:
        if embedder is None or img is None:
            hits = live.search_words(words or "", k, SearchFilters())
        else:
            hits = live.search(embedder.embed([img])[0], k, SearchFilters(), words, image=img)
            if regions:
                found = find_regions(img, embedder, live, k, SearchFilters())
        version = live.version
    finally:
        live.close()
    took = (time.perf_counter() - t0) * 1000
    if as_json:
        out = {
            "results": [hit_dict(h) for h in hits],
            "took_ms": round(took, 1),
            "model": model,
            "index_version": version,
        }
        if regions:
            out["regions"] = [region_dict(r) for r in found]
        typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
        return
    _print_hits(hits)
    if regions:
        typer.echo(f"\n{len(found)} region(s) found" + (":" if found else ""))
    for n, r in enumerate(found, 1):
        b = r.box
        typer.echo(
            f"\nregion {n}  box {b.x:.3f},{b.y:.3f},{b.w:.3f},{b.h:.3f}  "
            f"score {r.score:.3f}  {r.label or '(no label)'}"
        )
        _print_hits(r.hits)


def region_dict(region: Region) -> dict[str, Any]:
    """A region in the shape of the service's ``regions`` items (``results`` as hits)."""
    b = region.box.rounded()
    return {
        "box": {"x": b.x, "y": b.y, "w": b.w, "h": b.h},
        "score": round(region.score, 6),
        "label": region.label,
        "results": [hit_dict(h) for h in region.hits],
    }


def _print_hits(hits: list[Hit]) -> None:
    if not hits:
        typer.echo("no results")
        return
    typer.echo(f"{'#':>3}  {'score':>6}  {'product_id':<32} {'price':>10}  stock  title")
    for i, h in enumerate(hits, 1):
        p = h.product
        price = "" if p.price is None else f"{p.price:.2f} {p.currency or ''}".strip()
        stock = "yes" if p.in_stock else "no"
        typer.echo(
            f"{i:>3}  {h.score:6.3f}  {p.product_id:<32} {price:>10}  {stock:<5}  {p.title or ''}"
        )


def status(
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Show the live snapshot (model, counts, index type, age), the last run and the last job,
    and the optional capabilities this configuration uses but lacks (`shoplens doctor`)."""
    from shoplens import capabilities
    from shoplens.errors import SnapshotError
    from shoplens.indexer.feedback.book import feedback_stats
    from shoplens.indexer.ops.build import last_run
    from shoplens.indexer.ops.job_store import latest_job
    from shoplens.indexer.ops.learn_commands import feedback_lines
    from shoplens.indexer.ops.replicas import live_replicas
    from shoplens.indexer.serving.snapshot import current_id, read_facts

    settings = make_settings(data_dir)
    cur = current_id(settings)
    if cur is None:
        raise SnapshotError(f"no index in {settings.data_dir}: run `shoplens index MANIFEST`")
    facts = read_facts(settings.snapshots_dir / cur)
    run = last_run(settings)
    job = latest_job(settings)
    caps = capabilities.check(settings)
    feedback = feedback_stats(settings)
    # Over PostgreSQL: the `shoplens serve` replicas heartbeating now (None on SQLite).
    replicas = None
    if settings.database_url is not None:
        replicas = live_replicas(settings.database(settings.db_path), settings.replica_stale_s)
    if as_json:
        payload = {
            "snapshot": facts,
            "last_run": run,
            "last_job": job,
            "replicas": replicas,
            "feedback": feedback,
            "capabilities": capabilities.as_json(caps),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    c = facts.get("counts", {})
    created = str(facts.get("created_at", ""))
    idx = facts.get("index", {})
    lines = [
        f"data dir   {settings.data_dir}",
        f"snapshot   {cur} (built {created}, {_age(created)} ago)",
        f"model      {facts.get('model')} (dim {facts.get('dim')})",
        f"catalog    {c.get('products', 0)} products, {c.get('images', 0)} images, "
        f"{c.get('vectors', 0)} vectors",
        f"index      {idx.get('type')} {json.dumps(idx.get('params', {}))}",
    ]
    if run:
        lines.append(
            f"last run   {run.get('run_id')}: indexed {run.get('indexed')}, unchanged "
            f"{run.get('unchanged')}, rejected {run.get('rejected')}, removed "
            f"{run.get('removed')} in {run.get('seconds')}s"
        )
    if job:
        lines.append(_job_line(job))
    if replicas is not None:
        serving = ", ".join(f"{r['replica_id']} ({r['version'] or 'no index'})" for r in replicas)
        lines.append(f"replicas   {len(replicas)} live{': ' + serving if serving else ''}")
    lines.extend(feedback_lines(feedback))
    have = sum(cap.available for cap in caps)
    lines.append(f"optional   {have} of {len(caps)} capabilities available (shoplens doctor)")
    lines.extend(f"missing    {capabilities.warning_line(cap)}" for cap in caps if cap.degraded)
    typer.echo("\n".join(lines))
    sys.stdout.flush()


def _job_line(job: dict[str, Any]) -> str:
    """``last job   ID STATE: ...`` -- counts when done, progress while running, else the error."""
    head = f"last job   {job['job_id']} {job['state']}"
    if job.get("kind") == "learn":
        learnt = (job.get("learn") or {}).get("learnt")
        return f"{head} (learn){'' if learnt is None else f': learnt from {learnt} photos'}"
    counts = job.get("counts")
    if counts:
        return (
            f"{head}: indexed {counts['indexed']}, unchanged {counts['unchanged']}, "
            f"rejected {counts['rejected']}, removed {counts['removed']} "
            f"(finished {job.get('finished_at')})"
        )
    if job.get("error"):
        return f"{head}: {job['error']}"
    p = job.get("progress") or {}
    return f"{head}: {p.get('done', 0)}/{p.get('total') or '?'} images ({job['manifest']})"


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``shoplens`` app."""
    app.command("index")(index)
    app.command("search")(search)
    app.command("status")(status)
    app.command("learn")(learn)
    app.command("gc")(gc)
