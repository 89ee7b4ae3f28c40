"""Remote (http/https) manifest images: bounded, retried, size-capped and cached.

The manifest reader hands the URL rows to :meth:`RemoteFetcher.fetch_many` and
gets one :class:`FetchResult` per distinct URL: the body, or a short reason
("HTTP 404", "timed out after 3 retries", "response larger than 20 MiB",
"not an image (got text/html, ...)") that becomes the row's reject message.

A nightly run re-downloads only what changed: every response is kept in a
:class:`~shoplens.indexer.sources.fetch_cache.FetchCache` with its ETag and
Last-Modified, the next run sends If-None-Match / If-Modified-Since, and a 304
is answered from disk (``from_cache=True``).

The caller is synchronous; downloads run on a pool of ``max_connections``
threads sharing one ``httpx.Client`` whose pool has the same bound.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import random
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import httpx

from shoplens.indexer.sources.fetch_cache import CacheEntry, FetchCache
from shoplens.models.decode import SUPPORTED_FORMATS, sniff_format

log = logging.getLogger(__name__)

# sniff_format needs at most this many bytes for every format it knows.
_SNIFF_BYTES = 64


@dataclass(frozen=True)
class FetchConfig:
    """Knobs of :class:`RemoteFetcher` (mirrored by ``Settings.fetch_*``)."""

    max_connections: int = 8
    connect_timeout_s: float = 5.0
    # Longest silence between two reads of one response.
    read_timeout_s: float = 20.0
    # Wall-clock limit of one attempt, so a server dripping a byte every few
    # seconds cannot hold a connection for ever.
    attempt_timeout_s: float = 120.0
    # Further attempts after the first, on 5xx, 429, timeouts and connection errors.
    retries: int = 3
    # Backoff before retry n (1-based): base * 2**(n-1), capped, with equal jitter.
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    # A 429/503 Retry-After is honoured up to this many seconds.
    retry_after_max_s: float = 60.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    user_agent: str = "shoplens-indexer/0.1"
    # Disk budget of the download cache; least recently used entries are evicted
    # while fetching (None: unbounded, for callers that trim it themselves).
    cache_max_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> FetchConfig:
        """From ``shoplens.config.Settings``; fields it does not have keep their default."""
        d = cls()
        return cls(
            max_connections=getattr(settings, "fetch_max_connections", d.max_connections),
            connect_timeout_s=getattr(settings, "fetch_connect_timeout_s", d.connect_timeout_s),
            read_timeout_s=getattr(settings, "fetch_read_timeout_s", d.read_timeout_s),
            retries=getattr(settings, "fetch_retries", d.retries),
            max_bytes=getattr(settings, "max_image_bytes", d.max_bytes),
            cache_max_bytes=(
                int(settings.fetch_cache_max_mb) * 1024 * 1024
                if hasattr(settings, "fetch_cache_max_mb")
                else d.cache_max_bytes
            ),
        )


@dataclass(frozen=True)
class FetchResult:
    """The outcome for one URL: ``data`` and ``sha256`` on success, ``error`` otherwise."""

    url: str
    data: bytes | None
    sha256: str | None
    from_cache: bool
    error: str | None
    status: int | None  # last HTTP status seen; None when no response came
    attempts: int = 0  # HTTP requests made (0: refused before any)

    @property
    def ok(self) -> bool:
        return self.error is None


class _Retryable(Exception):
    def __init__(self, reason: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class _Fatal(Exception):
    def __init__(self, reason: str, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status


def human_bytes(n: int) -> str:
    """``20971520`` -> ``"20 MiB"``; exact multiples print without decimals."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.0f} {unit}" if n % size == 0 else f"{value:.1f} {unit}"
    return f"{n} bytes"


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be fetched at all, or None when it is a usable http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        return f"invalid URL ({exc})"
    if parts.scheme.lower() not in ("http", "https"):
        return f"unsupported URL scheme {parts.scheme or '(none)'!r} (only http and https)"
    if not parts.hostname:
        return "invalid URL (no host)"
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return max(0.0, when.timestamp() - current)


class RemoteFetcher:
    """Downloads images for the indexer; one instance per run, closed at the end."""

    def __init__(self, cache_dir: Path, config: FetchConfig | None = None) -> None:
        self.config = config or FetchConfig()
        cfg = self.config
        self.cache = FetchCache(cache_dir, max_bytes=cfg.cache_max_bytes)
        self._client = httpx.Client(
            timeout=httpx.Timeout(
                connect=cfg.connect_timeout_s,
                read=cfg.read_timeout_s,
                write=cfg.read_timeout_s,
                pool=cfg.attempt_timeout_s,
            ),
            limits=httpx.Limits(
                max_connections=cfg.max_connections,
                max_keepalive_connections=cfg.max_connections,
            ),
            follow_redirects=True,
            max_redirects=cfg.max_redirects,
            headers={"User-Agent": cfg.user_agent, "Accept": "image/*,*/*;q=0.8"},
        )
        self._rng = random.Random()
        self._too_large = f"response larger than {human_bytes(cfg.max_bytes)}"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RemoteFetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- many --------------------------------------------------------------

    def fetch_many(self, urls: Iterable[str]) -> Iterator[FetchResult]:
        """One result per distinct URL, in completion order (not input order).

        At most ``max_connections`` downloads run at once and at most twice
        that many results are pending, so memory stays bounded however long
        ``urls`` is. Closing the iterator early cancels what has not started
        and stops the running downloads at their next read.
        """
        cfg = self.config
        cancel = threading.Event()
        seen: set[str] = set()
        todo = iter(urls)
        pending: set[Future[FetchResult]] = set()
        pool = ThreadPoolExecutor(max_workers=cfg.max_connections, thread_name_prefix="fetch")
        try:
            while True:
                while len(pending) < 2 * cfg.max_connections:
                    url = next((u for u in todo if u not in seen), None)
                    if url is None:
                        break
                    seen.add(url)
                    pending.add(pool.submit(self._fetch_guarded, url, cancel))
                if not pending:
                    return
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield future.result()
        finally:
            cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- one ---------------------------------------------------------------

    def fetch(self, url: str, cancel: threading.Event | None = None) -> FetchResult:
        """Download (or revalidate) one URL; never raises for anything the server does.

        Setting ``cancel`` stops the download at its next read or backoff wait.
        """
        return self._fetch_guarded(url, cancel or threading.Event())

    def _fetch_guarded(self, url: str, cancel: threading.Event) -> FetchResult:
        try:
            return self._fetch(url, cancel)
        except Exception as exc:  # a bug here must cost one row, not the whole run
            log.exception("unexpected error fetching %s", url)
            return FetchResult(url, None, None, False, f"unexpected error: {exc!r}", None)

    def _fetch(self, url: str, cancel: threading.Event) -> FetchResult:
        problem = url_problem(url)
        if problem is not None:
            return FetchResult(url, None, None, False, problem, None, 0)
        cached = self.cache.load(url)
        retries = self.config.retries
        last: _Retryable | None = None
        for attempt in range(retries + 1):
            if last is not None:
                delay = self._delay(attempt, last.retry_after)
                log.debug("retry %d of %s in %.2fs (%s)", attempt, url, delay, last.reason)
                if cancel.wait(delay):
                    return FetchResult(url, None, None, False, "cancelled", last.status, attempt)
            try:
                return self._attempt(url, cached, attempt + 1, cancel)
            except _Retryable as exc:
                last = exc
            except _Fatal as exc:
                return FetchResult(url, None, None, False, exc.reason, exc.status, attempt + 1)
        assert last is not None  # the loop ran at least once and did not return
        reason = f"{last.reason} after {retries} retries" if retries else last.reason
        return FetchResult(url, None, None, False, reason, last.status, retries + 1)

    def _delay(self, retry: int, retry_after: float | None) -> float:
        cfg = self.config
        if retry_after is not None:
            return min(retry_after, cfg.retry_after_max_s)
        # "Equal jitter": half fixed so waits still grow, half random so a
        # thousand URLs on one failing host do not retry in lock-step.
        ceiling = min(cfg.backoff_max_s, cfg.backoff_base_s * 2.0 ** (retry - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _attempt(
        self,
        url: str,
        cached: tuple[CacheEntry, bytes] | None,
        attempts: int,
        cancel: threading.Event,
    ) -> FetchResult:
        headers: dict[str, str] = {}
        if cached is not None:
            entry = cached[0]
            if entry.etag:
                headers["If-None-Match"] = entry.etag
            if entry.last_modified:
                headers["If-Modified-Since"] = entry.last_modified
        deadline = time.monotonic() + self.config.attempt_timeout_s
        try:
            with self._client.stream("GET", url, headers=headers) as response:
                return self._read(url, response, cached, attempts, deadline, cancel)
        except httpx.TimeoutException:
            raise _Retryable("timed out") from None
        except httpx.TooManyRedirects:
            raise _Fatal(f"too many redirects (more than {self.config.max_redirects})") from None
        except httpx.UnsupportedProtocol as exc:
            raise _Fatal(f"redirected to an unsupported URL ({exc})") from None
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: {exc})") from None
        except httpx.HTTPError as exc:  # bad gzip, invalid redirect URL, ...
            raise _Fatal(f"{type(exc).__name__}: {exc}") from None

    def _read(
        self,
        url: str,
        response: httpx.Response,
        cached: tuple[CacheEntry, bytes] | None,
        attempts: int,
        deadline: float,
        cancel: threading.Event,
    ) -> FetchResult:
        status = response.status_code
        if status == 304 and cached is not None:
            entry, data = cached
            self.cache.revalidated(
                entry,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
            )
            return FetchResult(url, data, entry.sha256, True, None, 304, attempts)
        if status == 429 or status >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise _Retryable(f"HTTP {status}", status, retry_after)
        if status != 200:
            raise _Fatal(f"HTTP {status}", status)

        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.config.max_bytes:
            raise _Fatal(f"{self._too_large} (Content-Length {declared})", status)
        content_type = response.headers.get("content-type")
        body = bytearray()
        sniffed = False
        for chunk in response.iter_bytes():
            body += chunk
            if len(body) > self.config.max_bytes:
                raise _Fatal(self._too_large, status)
            if not sniffed and len(body) >= _SNIFF_BYTES:
                self._check_image(body, content_type, status)
                sniffed = True
            if time.monotonic() > deadline:
                raise _Retryable(f"timed out (slower than {self.config.attempt_timeout_s:g} s)")
            if cancel.is_set():
                raise _Fatal("cancelled", status)
        if not sniffed:
            self._check_image(body, content_type, status)

        data = bytes(body)
        digest = hashlib.sha256(data).hexdigest()
        try:
            self.cache.store(
                url,
                data,
                digest,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                content_type=content_type,
            )
        except OSError as exc:  # a full disk costs the next run a download, not this row
            log.warning("could not cache %s: %s", url, exc)
        return FetchResult(url, data, digest, False, None, status, attempts)

    @staticmethod
    def _check_image(head: bytearray, content_type: str | None, status: int) -> None:
        fmt = sniff_format(bytes(head[:_SNIFF_BYTES]))
        if fmt in SUPPORTED_FORMATS:
            return
        if not head:
            raise _Fatal("empty response (0 bytes)", status)
        got = content_type or "no Content-Type"
        if fmt is not None:
            got += f", looks like {fmt.upper()}"
        raise _Fatal(f"not an image (got {got}, first bytes {bytes(head[:16])!r})", status)
