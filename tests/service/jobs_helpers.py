"""Helpers for the re-index job tests: generated catalogs, a `shoplens serve`
subprocess, polling a job, a bounded search loop, a job held until shutdown."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from tests.held_embedder import HeldEmbedder
from tests.service.helpers import ADMIN_TOKEN, jpeg_bytes, synthetic_photo
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FINAL = ("succeeded", "failed", "interrupted")


def generated_manifest(folder: Path, seeds: range, *, bad_rows: int = 0) -> Path:
    """A CSV manifest of generated photos (one product each) plus ``bad_rows`` missing files."""
    photos = folder / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "image", "title", "category", "price", "currency"])
        for seed in seeds:
            name = f"gen-{seed:05d}.jpg"
            (photos / name).write_bytes(jpeg_bytes(synthetic_photo(seed, size=128)))
            w.writerow(
                [f"gen-{seed:05d}", f"photos/{name}", f"Generated {seed}", "Gen", "1.50", "EUR"]
            )
        for i in range(bad_rows):
            w.writerow([f"bad-{i}", f"photos/missing-{i}.jpg", "Missing", "Gen", "1", "EUR"])
    return manifest


def wait_job(
    get: Callable[[str], Any], job_id: str, timeout_s: float, until: Callable[[Any], bool]
) -> dict[str, Any]:
    """Poll ``GET /v1/admin/jobs/{id}`` (``get(path) -> response``) until ``until(job)``."""
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = get(f"/v1/admin/jobs/{job_id}")
        assert r.status_code == 200, r.text
        job = r.json()
        if until(job):
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not get there in {timeout_s}s: {job}")


def finished(job: dict[str, Any]) -> bool:
    return job["state"] in FINAL


def release_on_shutdown(
    client: TestClient, held: HeldEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The app's shutdown asks its job runner to stop first and only then lets the held
    batch through, so the job is interrupted mid-run every time, never after it ended."""
    app = client.app
    assert isinstance(app, FastAPI)
    runner = app.state.jobs
    stop = runner.stop

    def stop_then_release(timeout_s: float = 10.0) -> None:
        stop(0)  # raises the stop flag; the held job thread lives on, so nothing is closed
        held.release()
        stop(timeout_s)  # the job ends at its next image, interrupted; then the store closes

    monkeypatch.setattr(runner, "stop", stop_then_release)


@dataclass
class SearchLoop:
    """Searches in a background thread until stopped (bounded in count and time)."""

    post: Callable[[bytes], Any]
    photo: bytes
    max_requests: int = 20_000
    max_seconds: float = 900.0
    statuses: Counter[int] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    versions: set[str] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        n = 0
        while not self._stop.is_set() and n < self.max_requests and time.monotonic() < deadline:
            n += 1
            try:
                r = self.post(self.photo)
            except Exception as exc:  # a transport error is an error too
                self.errors.append(repr(exc))
                continue
            self.statuses[r.status_code] += 1
            if r.status_code != 200:
                self.errors.append(f"{r.status_code}: {r.text[:200]}")
            else:
                self.versions.add(r.json()["index_version"])
            time.sleep(0.02)

    def __enter__(self) -> SearchLoop:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)

    @property
    def answered(self) -> int:
        return self.statuses[200]


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.base, timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)


@contextmanager
def serve(
    data_dir: Path,
    log: Path,
    *,
    ready_timeout_s: float = 180.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Served]:
    """``shoplens serve`` on a free 127.0.0.1 port with the admin token set."""
    port = free_port()
    env = {
        **os.environ,
        "SHOPLENS_DATA_DIR": str(data_dir),
        "SHOPLENS_ADMIN_TOKEN": ADMIN_TOKEN,
        "SHOPLENS_RELOAD_INTERVAL_S": "0.5",
        **(extra_env or {}),
    }
    cmd = [sys.executable, "-m", "shoplens.cli", "serve", "--host", "127.0.0.1"]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    served = Served(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + ready_timeout_s
        with served.client(timeout=5.0) as c:
            while True:
                if proc.poll() is not None:
                    raise AssertionError(
                        f"serve exited {proc.returncode}: {log.read_text()[-3000:]}"
                    )
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"serve not up in {ready_timeout_s}s: {log.read_text()[-3000:]}"
                    )
                time.sleep(0.3)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
