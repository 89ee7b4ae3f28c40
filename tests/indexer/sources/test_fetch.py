"""RemoteFetcher against a real HTTP server on 127.0.0.1 that counts what it serves."""

from __future__ import annotations

import io
import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from shoplens.indexer.sources.fetch import (
    FetchConfig,
    FetchResult,
    RemoteFetcher,
    human_bytes,
    parse_retry_after,
    url_problem,
)
from shoplens.indexer.sources.fetch_hook import FetchFailed, FetchHook

pytestmark = pytest.mark.timeout(60)


def _image_bytes(fmt: str, color: tuple[int, int, int], size: int = 64) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (size, size), color).save(out, fmt)
    return out.getvalue()


JPEG = _image_bytes("JPEG", (200, 30, 30))
PNG = _image_bytes("PNG", (30, 200, 30))
JPEG_V2 = _image_bytes("JPEG", (30, 30, 200))
HTML = b"<!doctype html><html><body>Sorry, this product is gone</body></html>"
HUGE_TOTAL = 64 * 1024 * 1024  # what /huge would send if nobody stopped reading
CHUNK = 64 * 1024


@dataclass
class Resource:
    body: bytes
    content_type: str
    etag: str | None = None
    last_modified: str | None = None


@dataclass
class ServerState:
    resources: dict[str, Resource] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)  # requests per path
    bodies: Counter[str] = field(default_factory=Counter)  # 200s with a body per path
    not_modified: Counter[str] = field(default_factory=Counter)
    times: dict[str, list[float]] = field(default_factory=dict)
    huge_sent: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        state = self.server.state
        path = self.path
        with state.lock:
            state.hits[path] += 1
            state.times.setdefault(path, []).append(time.monotonic())
            n = state.hits[path]
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            self._route(state, path, n)
        except (BrokenPipeError, ConnectionResetError):
            pass
        finally:
            with state.lock:
                state.in_flight -= 1

    def _send(self, status: int, body: bytes = b"", ctype: str = "text/plain", **hdr: str) -> None:
        self.send_response(status)
        if status != 304:
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        for k, v in hdr.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        if status != 304:
            self.wfile.write(body)

    def _route(self, state: ServerState, path: str, n: int) -> None:
        if path in state.resources:
            self._resource(state, path, state.resources[path])
        elif path == "/slow":
            state.stop.wait(2.0)
            self._send(200, JPEG, "image/jpeg")
        elif path == "/flaky":
            if n <= 2:
                self._send(500, b"oops")
            else:
                self._send(200, JPEG, "image/jpeg")
        elif path == "/always500":
            self._send(503, b"down")
        elif path == "/missing":
            self._send(404, b"no such image")
        elif path == "/forbidden":
            self._send(403, b"no")
        elif path == "/busy":
            if n == 1:
                self._send(429, b"slow down", Retry_After="1")
            else:
                self._send(200, PNG, "image/png")
        elif path == "/very-busy":
            if n == 1:
                self._send(429, b"slow down", Retry_After="3600")
            else:
                self._send(200, PNG, "image/png")
        elif path == "/huge":
            self._huge(state)
        elif path == "/huge-declared":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(HUGE_TOTAL))
            self.end_headers()
            self.wfile.write(JPEG[:100])  # then hang up: the client must not wait for more
        elif path == "/page.html":
            self._send(200, HTML, "text/html; charset=utf-8")
        elif path == "/liar.jpg":
            self._send(200, HTML, "image/jpeg")
        elif path == "/empty":
            self._send(200, b"", "image/jpeg")
        elif path == "/redirect":
            self._send(302, b"", Location="/img/a.jpg")
        elif path == "/loop":
            self._send(302, b"", Location="/loop")
        elif path.startswith("/wait/"):
            time.sleep(0.15)
            self._send(200, JPEG, "image/jpeg")
        else:
            self._send(404, b"unknown route")

    def _resource(self, state: ServerState, path: str, res: Resource) -> None:
        inm = self.headers.get("If-None-Match")
        ims = self.headers.get("If-Modified-Since")
        validators = {}
        if res.etag:
            validators["ETag"] = res.etag
        if res.last_modified:
            validators["Last_Modified"] = res.last_modified
        fresh = (inm is not None and inm == res.etag) or (
            inm is None and ims is not None and ims == res.last_modified
        )
        if fresh:
            with state.lock:
                state.not_modified[path] += 1
            self._send(304, b"", "text/plain", **validators)
            return
        with state.lock:
            state.bodies[path] += 1
        self._send(200, res.body, res.content_type, **validators)

    def _huge(self, state: ServerState) -> None:
        """An endless-looking chunked body made on the fly; counts what got out."""
        self.send_response(200)
        self.send_header("Content-Type", "image/jpeg")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        chunk = JPEG[:CHUNK].ljust(CHUNK, b"\0")
        sent = 0
        while sent < HUGE_TOTAL and not state.stop.is_set():
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += len(chunk)
            with state.lock:
                state.huge_sent = sent
        self.wfile.write(b"0\r\n\r\n")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    httpd = _Server(("127.0.0.1", 0), Handler)
    httpd.state = ServerState()
    httpd.state.resources = {
        "/img/a.jpg": Resource(JPEG, "image/jpeg", etag='"a1"', last_modified=_date(1)),
        "/img/b.png": Resource(PNG, "image/png", etag='"b1"'),
        # Only Last-Modified: revalidated with If-Modified-Since.
        "/img/c.jpg": Resource(JPEG_V2, "image/jpeg", last_modified=_date(2)),
        # No validators at all: must be downloaded again every run.
        "/img/d.jpg": Resource(JPEG, "application/octet-stream"),
    }
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    host, port = httpd.server_address[:2]
    try:
        yield f"http://{host!s}:{port}", httpd.state
    finally:
        httpd.state.stop.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _date(day: int) -> str:
    return f"Wed, 0{day} Jan 2025 10:00:00 GMT"


FAST = FetchConfig(
    max_connections=4,
    connect_timeout_s=2.0,
    read_timeout_s=0.3,
    attempt_timeout_s=5.0,
    retries=3,
    backoff_base_s=0.02,
    backoff_max_s=0.1,
    retry_after_max_s=1.5,
    max_bytes=256 * 1024,
)


def _fetch_all(cache: Path, urls: list[str], config: FetchConfig = FAST) -> dict[str, FetchResult]:
    with RemoteFetcher(cache, config) as fetcher:
        return {r.url: r for r in fetcher.fetch_many(urls)}


def test_good_images_have_bytes_and_sha(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    urls = [f"{base}/img/a.jpg", f"{base}/img/b.png", f"{base}/img/a.jpg"]
    results = _fetch_all(tmp_path, urls)
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
    first = _fetch_all(tmp_path, urls)
    assert all(r.ok and not r.from_cache for r in first.values())
    assert {p: state.bodies[p] for p in paths} == dict.fromkeys(paths, 1)

    second = _fetch_all(tmp_path, urls)
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
    third = _fetch_all(tmp_path, urls[:1])[urls[0]]
    assert third.ok and not third.from_cache and third.data == JPEG_V2
    assert third.sha256 != first[urls[0]].sha256
    assert state.bodies["/img/a.jpg"] == 2
    # ... and the cache now holds the new version.
    fourth = _fetch_all(tmp_path, urls[:1])[urls[0]]
    assert fourth.from_cache and fourth.data == JPEG_V2


def test_corrupt_cache_body_is_fetched_unconditionally(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    url = f"{base}/img/a.jpg"
    _fetch_all(tmp_path, [url])
    (body,) = tmp_path.rglob("*.body")
    body.write_bytes(b"torn")
    again = _fetch_all(tmp_path, [url])[url]
    assert again.ok and not again.from_cache and again.data == JPEG
    assert state.bodies["/img/a.jpg"] == 2 and state.not_modified["/img/a.jpg"] == 0
    assert not list(tmp_path.rglob("*.tmp"))


def test_flaky_server_succeeds_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r = _fetch_all(tmp_path, [f"{base}/flaky"])[f"{base}/flaky"]
    assert r.ok and r.data == JPEG and r.attempts == 3
    assert state.hits["/flaky"] == 3


def test_persistent_5xx_gives_up_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r = _fetch_all(tmp_path, [f"{base}/always500"])[f"{base}/always500"]
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
    r = _fetch_all(tmp_path, [base + path])[base + path]
    assert r.error == f"HTTP {status}" and r.status == status and r.attempts == 1
    assert state.hits[path] == 1


def test_429_honours_retry_after(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    r = _fetch_all(tmp_path, [f"{base}/busy"])[f"{base}/busy"]
    assert r.ok and r.data == PNG and r.attempts == 2
    first, second = state.times["/busy"]
    assert second - first >= 0.95  # Retry-After: 1, not the 0.02 s backoff


def test_429_retry_after_is_capped(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    started = time.monotonic()
    r = _fetch_all(tmp_path, [f"{base}/very-busy"])[f"{base}/very-busy"]
    assert r.ok and state.hits["/very-busy"] == 2
    first, second = state.times["/very-busy"]
    assert second - first >= 1.4 and time.monotonic() - started < 10  # cap 1.5 s, not an hour


def test_slow_server_times_out_after_retries(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    config = FetchConfig(**{**FAST.__dict__, "retries": 1})
    r = _fetch_all(tmp_path, [f"{base}/slow"], config)[f"{base}/slow"]
    assert r.error == "timed out after 1 retries" and r.status is None and r.attempts == 2
    assert state.hits["/slow"] == 2


def test_huge_response_is_cut_off_while_streaming(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    r = _fetch_all(tmp_path, [f"{base}/huge"])[f"{base}/huge"]
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
    r = _fetch_all(tmp_path, [f"{base}/huge-declared"])[f"{base}/huge-declared"]
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
    r = _fetch_all(tmp_path, [base + path])[base + path]
    assert r.error is not None and r.error.startswith(expected), r.error
    assert r.status == 200 and state.hits[path] == 1


def test_octet_stream_with_image_bytes_is_accepted(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, _ = server
    r = _fetch_all(tmp_path, [f"{base}/img/d.jpg"])[f"{base}/img/d.jpg"]
    assert r.ok and r.data == JPEG


def test_redirects_are_followed_and_bounded(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    results = _fetch_all(tmp_path, [f"{base}/redirect", f"{base}/loop"])
    assert results[f"{base}/redirect"].data == JPEG
    loop = results[f"{base}/loop"]
    assert loop.error == "too many redirects (more than 5)" and loop.attempts == 1
    assert state.hits["/loop"] == 6


@pytest.mark.parametrize(
    "url", ["ftp://example.com/a.jpg", "file:///etc/passwd", "/local/a.jpg", "http:///a.jpg"]
)
def test_only_http_urls_are_fetched(tmp_path: Path, url: str) -> None:
    r = _fetch_all(tmp_path, [url])[url]
    assert r.error is not None and r.attempts == 0 and r.data is None
    assert url_problem(url) == r.error


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.jpg"
    r = _fetch_all(tmp_path, [url])[url]
    assert r.error is not None and r.error.startswith("connection failed (ConnectError")
    assert r.error.endswith("after 3 retries") and r.attempts == 4


def test_concurrency_is_bounded(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, state = server
    urls = [f"{base}/wait/{i}" for i in range(16)]
    config = FetchConfig(**{**FAST.__dict__, "max_connections": 3})
    results = _fetch_all(tmp_path, urls, config)
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


def test_fetch_hook_serves_the_pipeline_in_order(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    urls = [f"{base}/img/a.jpg", f"{base}/missing", f"{base}/img/b.png", f"{base}/img/a.jpg"]
    with RemoteFetcher(tmp_path, FAST) as fetcher, FetchHook(fetcher) as hook:
        hook.prefetch(urls)
        assert hook(urls[0]) == JPEG
        with pytest.raises(FetchFailed) as info:
            hook(urls[1])
        assert info.value.message == "HTTP 404"
        assert hook(urls[2]) == PNG
        assert hook(urls[3]) == JPEG  # the duplicate row is served from the same download
        assert hook(f"{base}/img/c.jpg") == JPEG_V2  # never announced: fetched on demand
        assert (hook.downloaded, hook.from_cache, hook.failed) == (4, 0, 1)
    assert state.hits["/img/a.jpg"] == 1 and state.hits["/missing"] == 1


def test_fetch_hook_runs_at_most_ahead_downloads_in_advance(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    urls = [f"{base}/wait/{i}" for i in range(12)]
    with RemoteFetcher(tmp_path, FAST) as fetcher, FetchHook(fetcher, ahead=3) as hook:
        hook.prefetch(urls)
        time.sleep(0.6)  # long enough for far more than 3 downloads of 0.15 s
        assert sum(state.hits.values()) == 3
        assert all(hook(u) == JPEG for u in urls)
    assert sum(state.hits.values()) == 12


def test_fetch_hook_close_cancels_retrying_downloads(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    config = FetchConfig(**{**FAST.__dict__, "retries": 10})  # ~4 s of retrying if left alone
    with RemoteFetcher(tmp_path, config) as fetcher:
        hook = FetchHook(fetcher)
        hook.prefetch([f"{base}/slow"])
        time.sleep(0.1)
        started = time.monotonic()
        hook.close()
        assert time.monotonic() - started < 1.5
    assert state.hits["/slow"] <= 3


def test_plugged_into_run_index(server: tuple[str, ServerState], tmp_path: Path) -> None:
    """The hook as the indexer's ``fetch``: rejects carry the reason; a rerun is all 304s."""
    from shoplens.config import Settings
    from shoplens.indexer.ops.build import run_index
    from shoplens.models.onnx_embedder import OnnxEmbedder
    from tests.indexer.engines.test_ray_engine import _tiny_model

    base, state = server
    embedder = OnnxEmbedder(_tiny_model(tmp_path / "model"))
    manifest = tmp_path / "catalog.csv"
    manifest.write_text(
        "product_id,image,title\n"
        f"p1,{base}/img/a.jpg,Red\n"
        f"p2,{base}/img/b.png,Green\n"
        f"p3,{base}/missing,Gone\n"
        f"p4,{base}/page.html,Html\n"
    )
    settings = Settings(data_dir=tmp_path / "data")

    def index() -> tuple[int, int, dict[int, str]]:
        with (
            RemoteFetcher(tmp_path / "fetch-cache", FAST) as fetcher,
            FetchHook(fetcher) as hook,
        ):
            hook.prefetch(  # what run_index would do with manifest.images
                [f"{base}/img/a.jpg", f"{base}/img/b.png", f"{base}/missing", f"{base}/page.html"]
            )
            report = run_index(settings, manifest, embedder=embedder, fetch=hook)
        reasons = {int(r["line"]): str(r["reason"]) for r in report.rejects_sample}
        return report.indexed, report.unchanged, reasons

    indexed, unchanged, reasons = index()
    assert (indexed, unchanged) == (2, 0)
    assert reasons[4] == f"cannot fetch {base}/missing: HTTP 404"
    assert reasons[5].startswith(f"cannot fetch {base}/page.html: not an image (got text/html")
    assert state.bodies["/img/a.jpg"] == 1

    indexed, unchanged, reasons = index()
    assert (indexed, unchanged) == (0, 2) and set(reasons) == {4, 5}
    assert state.bodies["/img/a.jpg"] == 1 and state.not_modified["/img/a.jpg"] == 1
    assert state.bodies["/img/b.png"] == 1 and state.not_modified["/img/b.png"] == 1


def test_the_cache_budget_from_settings_is_kept_while_fetching(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    from shoplens.config import Settings

    assert FetchConfig.from_settings(Settings(fetch_cache_max_mb=3)).cache_max_bytes == 3 << 20
    base, _ = server
    urls = [f"{base}{p}" for p in ("/img/a.jpg", "/img/b.png", "/img/c.jpg", "/img/d.jpg")]
    _fetch_all(tmp_path / "unbounded", urls)
    total = sum(f.stat().st_size for f in (tmp_path / "unbounded").rglob("*") if f.is_file())
    budget = total // 2
    results = _fetch_all(tmp_path / "bounded", urls, replace(FAST, cache_max_bytes=budget))
    assert all(r.ok for r in results.values())  # eviction never costs a result
    kept = sum(f.stat().st_size for f in (tmp_path / "bounded").rglob("*") if f.is_file())
    assert 0 < kept <= budget, (kept, budget, total)
