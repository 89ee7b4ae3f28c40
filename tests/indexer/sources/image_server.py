"""A real HTTP server on 127.0.0.1 that serves test images (and misbehaves on cue)
and counts what it serves: the fetcher's tests and `shoplens index`'s use it."""

from __future__ import annotations

import io
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image

from shoplens.indexer.sources.fetch import FetchConfig, FetchResult, RemoteFetcher


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


def fetch_all(cache: Path, urls: list[str], config: FetchConfig = FAST) -> dict[str, FetchResult]:
    """``fetch_many`` with a fresh fetcher over ``cache``; the results by URL."""
    with RemoteFetcher(cache, config) as fetcher:
        return {r.url: r for r in fetcher.fetch_many(urls)}
