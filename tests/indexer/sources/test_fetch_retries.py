"""RemoteFetcher's retries against a real HTTP server on 127.0.0.1: what is retried,
how long it waits (backoff, Retry-After), when it gives up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from shoplens.indexer.sources.fetch import FetchConfig, FetchResult, RemoteFetcher
from tests.indexer.sources.image_server import FAST, JPEG, PNG, ServerState, fetch_all, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.timeout(60)


class RecordedWaits(threading.Event):
    """A cancel event for :meth:`RemoteFetcher.fetch` that records every backoff wait
    asked of it and returns at once, as if the time had passed: the waits a retry
    made are checked as the numbers they are, not measured on a clock."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        assert timeout is not None, "a backoff wait is always bounded"
        self.seconds.append(timeout)
        return self.is_set()


def _fetch_one(cache: Path, url: str) -> tuple[FetchResult, list[float]]:
    """One URL through a fresh fetcher; its result and the waits before its retries."""
    waits = RecordedWaits()
    with RemoteFetcher(cache, FAST) as fetcher:
        return fetcher.fetch(url, waits), waits.seconds


def test_flaky_server_succeeds_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r = fetch_all(tmp_path, [f"{base}/flaky"])[f"{base}/flaky"]
    assert r.ok and r.data == JPEG and r.attempts == 3
    assert state.hits["/flaky"] == 3


def test_persistent_5xx_gives_up_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r, waits = _fetch_one(tmp_path, f"{base}/always500")
    assert r.error == "HTTP 503 after 3 retries" and r.status == 503 and r.data is None
    assert state.hits["/always500"] == 4
    # Equal jitter: retry n waits in [c/2, c] with c = 0.02 * 2**(n-1), so the waits grow.
    lows = (0.01, 0.02, 0.04)
    assert [low <= w <= 2 * low for w, low in zip(waits, lows, strict=True)] == [True] * 3


@pytest.mark.parametrize(("path", "status"), [("/missing", 404), ("/forbidden", 403)])
def test_other_4xx_are_not_retried(
    server: tuple[str, ServerState], tmp_path: Path, path: str, status: int
) -> None:
    base, state = server
    r = fetch_all(tmp_path, [base + path])[base + path]
    assert r.error == f"HTTP {status}" and r.status == status and r.attempts == 1
    assert state.hits[path] == 1


def test_429_honours_retry_after(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    r, waits = _fetch_one(tmp_path, f"{base}/busy")
    assert r.ok and r.data == PNG and r.attempts == 2
    assert state.hits["/busy"] == 2
    assert waits == [1.0]  # Retry-After: 1, not the 0.02 s backoff


def test_429_retry_after_is_capped(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    r, waits = _fetch_one(tmp_path, f"{base}/very-busy")
    assert r.ok and state.hits["/very-busy"] == 2
    assert waits == [1.5]  # cap 1.5 s, not an hour


def test_slow_server_times_out_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    config = FetchConfig(**{**FAST.__dict__, "retries": 1})
    r = fetch_all(tmp_path, [f"{base}/slow"], config)[f"{base}/slow"]
    assert r.error == "timed out after 1 retries" and r.status is None and r.attempts == 2
    assert state.hits["/slow"] == 2


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.jpg"
    r = fetch_all(tmp_path, [url])[url]
    assert r.error is not None and r.error.startswith("connection failed (ConnectError")
    assert r.error.endswith("after 3 retries") and r.attempts == 4
