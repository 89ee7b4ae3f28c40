"""`shoplens demo` as a real process on a free loopback port, for the browser and README tests."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.support import free_port


@contextmanager
def running_demo(data_dir: Path, log_path: Path, *args: str) -> Iterator[str]:
    """Run ``shoplens demo --data-dir DATA_DIR ARGS...`` until the block ends; yields its
    base URL once ``/readyz`` answers 200. The process's output goes to ``log_path``."""
    port = free_port()
    cmd = [sys.executable, "-c", "from shoplens.cli import main; main()", "demo"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), *args]
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.poll() is not None:
                    pytest.fail(log_path.read_text(errors="replace")[-3000:])
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("shoplens demo did not become ready in 120 s")
                time.sleep(0.25)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
