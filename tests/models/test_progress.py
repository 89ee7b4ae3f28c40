"""Slow steps say so: a bar on a terminal, log lines otherwise (exporting a model,
embedding a catalog, building its snapshot)."""

from __future__ import annotations

import fcntl
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest

from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index
from shoplens.models import progress
from shoplens.models.base import ImageEmbedder
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.quantize import calibration_photos, quantize_export
from tests.indexer.helpers import HistEmbedder, write_catalog

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def announce_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every step shows from its start, so a test sees what a slow one would show."""
    monkeypatch.setattr(progress, "ANNOUNCE_AFTER_S", 0.0)


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == progress.__name__]


def test_a_quick_step_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with progress.step("adding two numbers", total=1) as shown:
        shown.advance()
    assert shown.done == 1 and not shown.shown
    assert _lines(caplog) == []


@pytest.mark.usefixtures("announce_at_once")
def test_a_slow_step_logs_what_it_does_and_how_long_it_took(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    with progress.step("counting sheep", total=3, unit="sheep") as shown:
        shown.advance(3)
    first, last = _lines(caplog)
    assert first == "counting sheep... (0/3 sheep)"
    assert last.startswith("counting sheep: done in ") and last.endswith("(3/3 sheep)")


def test_on_a_terminal_a_slow_step_is_a_bar() -> None:
    code = textwrap.dedent(
        """
        from shoplens.models import progress
        progress.ANNOUNCE_AFTER_S = 0.0
        with progress.step("counting sheep", total=3, unit="sheep") as shown:
            shown.advance(3)
        """
    )
    leader, follower = pty.openpty()
    # A pseudo-terminal starts 0 columns wide; a real one is not.
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            timeout=60,
        )
        os.close(follower)
        shown = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the terminal's other side is closed: all read
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert b"counting sheep" in shown and b"3/3" in shown  # tqdm's "3/3 [00:00..."


@pytest.mark.usefixtures("announce_at_once")
def test_indexing_reports_embedding_fitting_and_the_snapshot(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    manifest = write_catalog(tmp_path / "cat", 5, 2)
    run_index(Settings(data_dir=tmp_path / "data"), manifest, embedder=HistEmbedder())
    lines = _lines(caplog)
    assert "embedding 10 photos (test-thumb)... (0/10 photos)" in lines
    assert any(line.startswith("embedding 10 photos (test-thumb): done in") for line in lines)
    assert "building the snapshot of 10 photos..." in lines
    assert "fitting the catalog adaptation (lda) on 10 photos..." in lines


@pytest.mark.usefixtures("announce_at_once")
def test_quantizing_reports_calibration_and_keeps_the_quantizer_quiet(
    tmp_path: Path, embedder: ImageEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    caplog.set_level(logging.INFO)
    photos = calibration_photos()[:3]
    quantize_export(embedder.model_dir, tmp_path / "cache", photos=photos)
    lines = _lines(caplog)
    assert "quantizing effnet-lite0 to int8, calibrated on 3 photos... (0/3 photos)" in lines
    assert any(line.endswith("(3/3 photos)") and "done in" in line for line in lines)
    assert "checking the int8 model of effnet-lite0 against float32..." in lines
    # ONNX Runtime's quantizer logs a line per rescaled weight on the root logger.
    assert not [r for r in caplog.records if r.name == "root" and r.levelno < logging.WARNING]
