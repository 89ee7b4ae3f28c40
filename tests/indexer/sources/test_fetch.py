"""RemoteFetcher against a real HTTP server on 127.0.0.1 that counts what it serves:
what it downloads, revalidates and caches, what it refuses, how many at once."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import pytest

from shoplens.indexer.sources.fetch import (
    FetchConfig,
    RemoteFetcher,
    human_bytes,
    parse_retry_after,
    url_problem,
)
from tests.indexer.sources.image_server import (
    FAST,
    HUGE_TOTAL,
    JPEG,
    JPEG_V2,
    PNG,
    Resource,
    ServerState,
    fetch_all,
    server,
)

__all__ = ["server"]  # the fixture

pytestmark = pytest.mark.timeout(60)


def test_good_images_have_bytes_and_sha(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    urls = [f"{base}/img/a.jpg", f"{base}/img/b.png", f"{base}/img/a.jpg"]
    results = fetch_all(tmp_path, urls)
    assert set(results) == {urls[0], urls[1]}  # duplicates fetched once
    a = results[urls[0]]
    assert a.ok and a.data == JPEG and a.status == 200 and not a.from_cache and a.attempts == 1
    assert a.sha256 is not None and len(a.sha256) == 64
    assert results[urls[1]].data == PNG
    assert state.hits["/img/a.jpg"] == 1


def test_second_run_revalidates_and_downloads_nothing(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    paths = ["/img/a.jpg", "/img/b.png", "/img/c.jpg", "/img/d.jpg"]
    urls = [base + p for p in paths]
    first = fetch_all(tmp_path, urls)
    assert all(r.ok and not r.from_cache for r in first.values())
    assert {p: state.bodies[p] for p in paths} == dict.fromkeys(paths, 1)

    second = fetch_all(tmp_path, urls)
    for p in paths[:3]:  # ETag, ETag, Last-Modified only
        r = second[base + p]
        assert r.ok and r.from_cache and r.status == 304, p
        assert r.data == first[base + p].data and r.sha256 == first[base + p].sha256
        assert state.bodies[p] == 1 and state.not_modified[p] == 1, p
    # Without validators there is nothing to ask conditionally: downloaded again.
    assert not second[base + "/img/d.jpg"].from_cache
    assert state.bodies["/img/d.jpg"] == 2

    # The image changes on the server: new ETag, new bytes, re-downloaded.
    state.resources["/img/a.jpg"] = Resource(JPEG_V2, "image/jpeg", etag='"a2"')
    third = fetch_all(tmp_path, urls[:1])[urls[0]]
    assert third.ok and not third.from_cache and third.data == JPEG_V2
    assert third.sha256 != first[urls[0]].sha256
    assert state.bodies["/img/a.jpg"] == 2
    # ... and the cache now holds the new version.
    fourth = fetch_all(tmp_path, urls[:1])[urls[0]]
    assert fourth.from_cache and fourth.data == JPEG_V2


def test_corrupt_cache_body_is_fetched_unconditionally(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    url = f"{base}/img/a.jpg"
    fetch_all(tmp_path, [url])
    (body,) = tmp_path.rglob("*.body")
    body.write_bytes(b"torn")
    again = fetch_all(tmp_path, [url])[url]
    assert again.ok and not again.from_cache and again.data == JPEG
    assert state.bodies["/img/a.jpg"] == 2 and state.not_modified["/img/a.jpg"] == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_huge_response_is_cut_off_while_streaming(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r = fetch_all(tmp_path, [f"{base}/huge"])[f"{base}/huge"]
    assert r.error == "response larger than 256 KiB" and r.data is None and r.attempts == 1
    time.sleep(0.2)  # let the server notice the hang-up
    # The client stopped reading at the cap; past it only the loopback socket
    # buffers filled (about 4 MiB here), not the 64 MiB the server would send.
    assert state.huge_sent < HUGE_TOTAL // 4, state.huge_sent
    assert not list(tmp_path.rglob("*.body"))


def test_declared_huge_response_is_refused_before_reading(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, _ = server
    r = fetch_all(tmp_path, [f"{base}/huge-declared"])[f"{base}/huge-declared"]
    assert r.error == f"response larger than 256 KiB (Content-Length {HUGE_TOTAL})"
    assert r.attempts == 1


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/page.html", "not an image (got text/html; charset=utf-8, looks like HTML"),
        ("/liar.jpg", "not an image (got image/jpeg, looks like HTML"),
        ("/empty", "empty response (0 bytes)"),
    ],
)
def test_non_images_are_rejected_by_content(
    server: tuple[str, ServerState], tmp_path: Path, path: str, expected: str
) -> None:
    base, state = server
    r = fetch_all(tmp_path, [base + path])[base + path]
    assert r.error is not None and r.error.startswith(expected), r.error
    assert r.status == 200 and state.hits[path] == 1


def test_octet_stream_with_image_bytes_is_accepted(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, _ = server
    r = fetch_all(tmp_path, [f"{base}/img/d.jpg"])[f"{base}/img/d.jpg"]
    assert r.ok and r.data == JPEG


def test_redirects_are_followed_and_bounded(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    results = fetch_all(tmp_path, [f"{base}/redirect", f"{base}/loop"])
    assert results[f"{base}/redirect"].data == JPEG
    loop = results[f"{base}/loop"]
    assert loop.error == "too many redirects (more than 5)" and loop.attempts == 1
    assert state.hits["/loop"] == 6


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "/local/a.jpg", "http:///a.jpg"]
)
def test_only_http_urls_are_fetched(tmp_path: Path, url: str) -> None:
    r = fetch_all(tmp_path, [url])[url]
    assert r.error is not None and r.attempts == 0 and r.data is None
    assert url_problem(url) == r.error


def test_concurrency_is_bounded(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    urls = [f"{base}/wait/{i}" for i in range(16)]
    config = FetchConfig(**{**FAST.__dict__, "max_connections": 3})
    results = fetch_all(tmp_path, urls, config)
    assert len(results) == 16 and all(r.ok for r in results.values())
    assert 2 <= state.max_in_flight <= 3


def test_closing_the_iterator_early_stops_work(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    urls = [f"{base}/wait/{i}" for i in range(50)]
    with RemoteFetcher(tmp_path, FAST) as fetcher:
        it = fetcher.fetch_many(urls)
        next(it)
        it.close()  # type: ignore[attr-defined]
    assert sum(v for k, v in state.hits.items() if k.startswith("/wait/")) <= 2 * 4 + 1


def test_helpers() -> None:
    assert human_bytes(20 * 1024 * 1024) == "20 MiB"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(10) == "10 bytes"
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Wed, 01 Jan 2025 10:00:10 GMT", now=1735725600.0) == 10.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_the_cache_budget_from_settings_is_kept_while_fetching(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    from shoplens.config import Settings

    assert FetchConfig.from_settings(Settings(fetch_cache_max_mb=3)).cache_max_bytes == 3 << 20
    base, _ = server
    urls = [f"{base}{p}" for p in ("/img/a.jpg", "/img/b.png", "/img/c.jpg", "/img/d.jpg")]
    fetch_all(tmp_path / "unbounded", urls)
    total = sum(f.stat().st_size for f in (tmp_path / "unbounded").rglob("*") if f.is_file())
    budget = total // 2
    results = fetch_all(tmp_path / "bounded", urls, replace(FAST, cache_max_bytes=budget))
    assert all(r.ok for r in results.values())  # eviction never costs a result
    kept = sum(f.stat().st_size for f in (tmp_path / "bounded").rglob("*") if f.is_file())
    assert 0 < kept <= budget, (kept, budget, total)
