"""RemoteFetcher's retries against a real HTTP server on 127.0.0.1: what is retried,
how long it waits (backoff, Retry-After), when it gives up."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from shoplens.indexer.sources.fetch import FetchConfig
from tests.indexer.sources.image_server import FAST, JPEG, PNG, ServerState, fetch_all, server

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.timeout(60)


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
    r = fetch_all(tmp_path, [f"{base}/always500"])[f"{base}/always500"]
    assert r.error == "HTTP 503 after 3 retries" and r.status == 503 and r.data is None
    assert state.hits["/always500"] == 4
    times = state.times["/always500"]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Equal jitter: retry n waits in [c/2, c] with c = 0.02 * 2**(n-1), so the waits grow.
    assert [g >= low for g, low in zip(gaps, (0.01, 0.02, 0.04), strict=True)] == [True] * 3


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
    r = fetch_all(tmp_path, [f"{base}/busy"])[f"{base}/busy"]
    assert r.ok and r.data == PNG and r.attempts == 2
    first, second = state.times["/busy"]
    assert second - first >= 0.95  # Retry-After: 1, not the 0.02 s backoff


def test_429_retry_after_is_capped(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    started = time.monotonic()
    r = fetch_all(tmp_path, [f"{base}/very-busy"])[f"{base}/very-busy"]
    assert r.ok and state.hits["/very-busy"] == 2
    first, second = state.times["/very-busy"]
    assert second - first >= 1.4 and time.monotonic() - started < 10  # cap 1.5 s, not an hour


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
