"""Kill an indexing process with SIGKILL part-way through; the published snapshot
stays loadable and a rerun resumes without re-embedding committed batches."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shoplens.config import Settings
from shoplens.indexer.catalog.types import SearchFilters
from shoplens.indexer.ops.build import run_index
from shoplens.indexer.serving.live import LiveIndex
from tests.indexer.helpers import HistEmbedder, write_catalog

REPO = Path(__file__).resolve().parents[3]


def _embedded(db: Path, model: str) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    except sqlite3.OperationalError:
        return 0
    try:
        return int(
            con.execute("SELECT COUNT(*) FROM idx_embeddings WHERE model = ?", (model,)).fetchone()[
                0
            ]
        )
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def _spawn(cmd: list[str], delay: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SHOPLENS_TEST_EMBED_DELAY": delay, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _kill_after(
    proc: subprocess.Popen[bytes], db: Path, model: str, at_least: int, timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while _embedded(db, model) < at_least:
        if proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"indexer exited early ({proc.returncode}): {err.decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("indexer made no progress")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _kill_when_held(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the worker as soon as it says its run is held part-way (index_worker's
    HOLD_AFTER): the kill always lands mid-run, after a known number of batches."""
    assert proc.stdout is not None
    said = proc.stdout.readline()
    if said.strip() != b"held":
        proc.kill()
        _out, err = proc.communicate()
        pytest.fail(f"indexer did not hold ({proc.returncode}, {said!r}): {err.decode()[-2000:]}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _check_resume(settings: Settings, manifest: Path, total: int, before: str, base: int) -> None:
    hist = HistEmbedder()
    # The snapshot published before the kill is still the live one, and loads.
    live = LiveIndex.open(settings, hist.name)
    try:
        assert live.snapshot_id == before
        q = np.ones(hist.dim, np.float32)
        assert live.search(q, 5, SearchFilters())
    finally:
        live.close()
    committed = _embedded(settings.db_path, hist.name)
    report = run_index(settings, manifest, embedder=hist)
    assert report.indexed == total - (committed - base)
    assert report.indexed + report.unchanged == total
    assert report.vectors == total  # the big catalog replaces the small one's p0..
    live = LiveIndex.open(settings, hist.name)
    try:
        assert live.size["vectors"] == total
    finally:
        live.close()


def test_sigkill_then_resume(tmp_path: Path, settings: Settings) -> None:
    root = tmp_path / "cat"
    small = write_catalog(root / "small", 10, 2)
    before = run_index(settings, small, embedder=HistEmbedder()).snapshot_id
    manifest = write_catalog(root / "big", 150, 2, seed0=10_000_000)  # 300 images
    batch = 16
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "tests.indexer.index_worker",
            str(manifest),
            str(settings.data_dir),
            str(batch),
            "2",  # commit two batches, then hold in the third until killed
        ],
        delay="0",
    )
    _kill_when_held(proc)
    committed = _embedded(settings.db_path, HistEmbedder().name) - 20
    assert 2 * batch <= committed < 300
    assert committed % batch == 0  # whole batches only: one transaction each
    _check_resume(settings, manifest, 300, before, 20)


@pytest.mark.slow
def test_sigkill_at_random_points(tmp_path: Path, settings: Settings) -> None:
    rng = random.Random(1234)
    root = tmp_path / "cat"
    before = run_index(settings, write_catalog(root / "small", 5, 1), embedder=HistEmbedder())
    manifest = write_catalog(root / "big", 200, 2, seed0=20_000_000)
    for _ in range(8):
        proc = _spawn(
            [
                sys.executable,
                "-m",
                "tests.indexer.index_worker",
                str(manifest),
                str(settings.data_dir),
                "8",
            ],
            delay="0.02",
        )
        time.sleep(rng.uniform(0.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        live = LiveIndex.open(settings, HistEmbedder().name)  # always loadable
        live.close()
    del before
    report = run_index(settings, manifest, embedder=HistEmbedder())
    assert report.vectors == 400


@pytest.mark.slow
def test_real_cli_sigkill_then_resume(tmp_path: Path, settings: Settings) -> None:
    """The console entry point with the real default model."""
    from shoplens.models.registry import load_embedder

    model = load_embedder(settings)
    root = tmp_path / "cat"
    small = write_catalog(root / "small", 4, 1)
    first = run_index(settings, small, embedder=model)
    manifest = write_catalog(root / "big", 100, 2, seed0=30_000_000)
    proc = _spawn(
        [
            sys.executable,
            "-m",
            "shoplens.cli",
            "index",
            str(manifest),
            "--data-dir",
            str(settings.data_dir),
        ],
        delay="0",
    )
    _kill_after(proc, settings.db_path, model.name, 4 + 2 * settings.batch_size, timeout=300)
    live = LiveIndex.open(settings, model.name)
    assert live.snapshot_id == first.snapshot_id
    live.close()
    committed = _embedded(settings.db_path, model.name)
    report = run_index(settings, manifest, embedder=model)
    assert report.indexed == 204 - committed
