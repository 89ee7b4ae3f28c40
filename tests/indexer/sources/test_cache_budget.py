"""Size-bounded caches on real files: the fetch cache and the LRU eviction under it."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoplens.cli import app
from shoplens.files.disk_lru import MIB, RESCAN_FRACTION, DiskLru
from shoplens.indexer.sources.fetch_cache import FetchCache
from tests.indexer.helpers import write_catalog

BODY = 10_000


def _store(cache: FetchCache, url: str, fill: int) -> bytes:
    data = bytes([fill % 256]) * BODY
    cache.store(
        url,
        data,
        hashlib.sha256(data).hexdigest(),
        etag=f'"{fill}"',
        last_modified=None,
        content_type="image/jpeg",
    )
    return data


def _size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _age(root: Path, seconds: float) -> None:
    """Make every file in the cache look last used ``seconds`` ago."""
    when = time.time() - seconds
    for p in root.rglob("*"):
        if p.is_file():
            os.utime(p, (when, when))


def test_fetch_cache_stays_under_budget_and_keeps_what_was_used(tmp_path: Path) -> None:
    root = tmp_path / "fetch"
    budget = 100_000  # ten bodies and their JSON do not fit
    cache = FetchCache(root, max_bytes=budget)
    urls = [f"https://shop.example/img/{i}.jpg" for i in range(8)]
    for i, url in enumerate(urls):
        _store(cache, url, i)
    _age(root, 600)
    for i in range(8, 30):
        # URL 0 is the oldest write, but every round uses it (a hit).
        assert cache.load(urls[0]) is not None
        _store(cache, f"https://shop.example/img/{i}.jpg", i)
        assert _size(root) <= budget
    assert _size(root) > budget * 0.7  # evicted down to the low-water mark, not emptied
    hit = cache.load(urls[0])
    assert hit is not None and hit[1] == bytes([0]) * BODY
    assert cache.load(urls[1]) is None  # least recently used: gone, body and JSON
    assert not list(root.rglob(f"{hashlib.sha256(urls[1].encode()).hexdigest()}.*"))
    # The newest are all there.
    for i in range(25, 30):
        assert cache.load(f"https://shop.example/img/{i}.jpg") is not None


def test_without_a_budget_store_never_evicts_and_prune_applies_one(tmp_path: Path) -> None:
    root = tmp_path / "fetch"
    cache = FetchCache(root)
    for i in range(20):
        _store(cache, f"https://shop.example/{i}", i)
    full = _size(root)
    assert full > 20 * BODY
    dry = cache.prune(50_000, dry_run=True)
    assert dry.entries_evicted > 0 and _size(root) == full  # dry run: nothing deleted
    report = cache.prune(50_000)
    assert (report.bytes_before, report.entries_evicted) == (full, dry.entries_evicted)
    assert report.bytes_after == _size(root) <= 50_000 * 0.9
    assert cache.prune(50_000).entries_evicted == 0


def test_files_being_written_are_never_evicted(tmp_path: Path) -> None:
    """Writers rename dot-named temporary files into place; a scan leaves fresh ones."""
    root = tmp_path / "fetch"
    cache = FetchCache(root)
    for i in range(5):
        _store(cache, f"https://shop.example/{i}", i)
    folder = next(p for p in root.iterdir() if p.is_dir())
    writing = folder / ".abc.body.x1.tmp"
    writing.write_bytes(b"w" * 50_000)
    stale = folder / ".def.body.x2.tmp"
    stale.write_bytes(b"s" * 5_000)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    report = cache.prune(1)
    assert report.entries_evicted == 5 and (report.temp_files, report.temp_bytes) == (1, 5_000)
    assert writing.read_bytes() == b"w" * 50_000
    assert not stale.exists()


def test_processes_sharing_a_cache_overshoot_by_a_bounded_amount(tmp_path: Path) -> None:
    """Two writers (as two processes would: separate bookkeeping) on one directory."""
    root = tmp_path / "shared"
    budget = 400_000
    writers = [DiskLru(root), DiskLru(root)]
    worst = 0
    for i in range(200):
        path = root / f"{i % 7}" / f"entry-{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 5_000)
        writers[i % 2].wrote(5_000, budget)
        worst = max(worst, _size(root))
    # Each writer scans again after writing RESCAN_FRACTION of the budget.
    assert worst <= budget * (1 + 2 * RESCAN_FRACTION) + 5_000
    assert _size(root) <= budget * (1 + 2 * RESCAN_FRACTION)
    assert (root / "3" / "entry-199").exists()  # the newest survives


@pytest.mark.usefixtures("embedder")  # the command loads the default model (exported once)
def test_shoplens_index_trims_the_fetch_cache_to_its_budget(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    cache = FetchCache(data_dir / "cache" / "fetch")
    for i in range(150):  # 1.5 MB of earlier downloads, the first the least recently used
        _store(cache, f"https://shop.example/{i}", i)
        key = hashlib.sha256(f"https://shop.example/{i}".encode()).hexdigest()
        for p in cache.root.glob(f"*/{key}.*"):
            os.utime(p, (time.time() - 3600 + i, time.time() - 3600 + i))
    kept = "https://shop.example/3"
    assert cache.load(kept) is not None  # used since
    manifest = write_catalog(tmp_path / "cat", 2, 1)
    out = CliRunner().invoke(
        app,
        ["index", str(manifest), "--data-dir", str(data_dir)],
        env={"SHOPLENS_FETCH_CACHE_MAX_MB": "1"},
    )
    assert out.exit_code == 0, out.output
    assert "indexed 2" in out.output
    assert _size(cache.root) <= MIB
    assert cache.load(kept) is not None
    assert cache.load("https://shop.example/0") is None
