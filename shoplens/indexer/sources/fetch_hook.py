"""The indexer's fetch hook (``Callable[[str], bytes]``) on top of :class:`RemoteFetcher`.

The embedding pipeline asks for one URL at a time from its few decode threads.
Told the manifest's URLs up front (:meth:`FetchHook.prefetch`), the hook keeps
up to ``ahead`` downloads running or finished ahead of those requests, in
manifest order, on ``max_connections`` threads -- so a slow CDN does not leave
the decoders idle, and memory holds at most ``ahead`` bodies.
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from types import TracebackType

from shoplens.errors import ShoplensError
from shoplens.indexer.sources.fetch import FetchResult, RemoteFetcher


class FetchFailed(ShoplensError):
    """A remote image could not be downloaded; the message is the reject reason."""

    status = 422
    code = "fetch_failed"


class FetchHook:
    """``hook(url) -> bytes``, raising :class:`FetchFailed` with the reason."""

    def __init__(self, fetcher: RemoteFetcher, *, ahead: int | None = None) -> None:
        self.fetcher = fetcher
        self.ahead = ahead if ahead is not None else 4 * fetcher.config.max_connections
        self._pool = ThreadPoolExecutor(
            max_workers=fetcher.config.max_connections, thread_name_prefix="fetch-ahead"
        )
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._queue: deque[str] = deque()  # URLs announced, not yet started
        self._wanted: Counter[str] = Counter()  # announced requests per URL not yet served
        self._started: dict[str, Future[FetchResult]] = {}
        # What happened, for the run summary.
        self.downloaded = 0
        self.from_cache = 0
        self.failed = 0

    def prefetch(self, urls: Iterable[str]) -> None:
        """Announce the URLs the pipeline will ask for, in the order it will ask."""
        with self._lock:
            for url in urls:
                if self._wanted[url] == 0 and url not in self._started:
                    self._queue.append(url)
                self._wanted[url] += 1
            self._top_up()

    def _top_up(self) -> None:
        # Caller holds the lock.
        while self._queue and len(self._started) < self.ahead:
            url = self._queue.popleft()
            if url not in self._started:
                self._started[url] = self._submit(url)

    def _submit(self, url: str) -> Future[FetchResult]:
        return self._pool.submit(self.fetcher.fetch, url, self._cancel)

    def __call__(self, url: str) -> bytes:
        with self._lock:
            future = self._started.get(url)
            if future is None:  # not announced, or announced but not started yet
                future = self._started[url] = self._submit(url)
        result = future.result()
        with self._lock:
            self._wanted[url] -= 1
            if self._wanted[url] <= 0:
                # Last announced request for this URL: free the body.
                del self._wanted[url]
                self._started.pop(url, None)
                if url in self._queue:
                    self._queue.remove(url)
            self._top_up()
            if result.error is not None:
                self.failed += 1
            elif result.from_cache:
                self.from_cache += 1
            else:
                self.downloaded += 1
        if result.error is not None or result.data is None:
            raise FetchFailed(result.error or "no data", url=url, status=result.status)
        return result.data

    def close(self) -> None:
        self._cancel.set()
        with self._lock:
            self._queue.clear()
            for future in self._started.values():
                future.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> FetchHook:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
