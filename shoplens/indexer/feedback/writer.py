"""The search log written off the request thread: rows batched by a background writer.

A search used to pay for one INSERT (and, on a shared PostgreSQL database, a
network round trip) on the request thread. Now :meth:`SearchLogWriter.put`
only files the row in memory; a daemon thread writes whatever accumulated
every ``flush_s`` (~0.1 s) in one transaction. So a search id answered by one
replica is known to every other replica within ``flush_s`` plus one commit.

- bounded: past ``max_pending`` rows waiting (the database is slow or away)
  a row is written on the caller's thread instead, so memory stays bounded and
  the search simply pays what it paid before;
- this process never misses its own rows: a feedback event for a search still
  waiting here flushes it first (:meth:`SearchLogWriter.ensure_written`);
- :meth:`SearchLogWriter.close` writes what is left (a clean shutdown loses
  nothing; a killed process loses at most the last ``flush_s`` of search ids,
  whose feedback then answers 404, as a row lost in a power cut did before).
"""

from __future__ import annotations

import logging
import threading

from shoplens.indexer.feedback.store import FeedbackStore, NewSearch

log = logging.getLogger(__name__)

FLUSH_S = 0.1
MAX_PENDING = 10_000


class SearchLogWriter:
    def __init__(
        self, store: FeedbackStore, *, flush_s: float = FLUSH_S, max_pending: int = MAX_PENDING
    ) -> None:
        self.store = store
        self.flush_s = flush_s
        self.max_pending = max_pending
        self._cond = threading.Condition()
        # Rows stay here until committed: a reader that finds its id here waits.
        self._pending: dict[str, NewSearch] = {}
        self._write = threading.Lock()  # one batch at a time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoplens-searchlog", daemon=True)
        self._thread.start()

    def put(self, row: NewSearch) -> None:
        with self._cond:
            full = len(self._pending) >= self.max_pending
            if not full:
                self._pending[row.search_id] = row
                self._cond.notify()
        if full:  # back-pressure: this search pays for its own write, as before
            self.store.record_searches([row])

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def ensure_written(self, search_id: str) -> None:
        """Return once ``search_id`` (if it was put here) is in the database."""
        with self._cond:
            waiting = search_id in self._pending
        if waiting:
            self.flush()

    def flush(self) -> int:
        """Write every waiting row now; how many were written."""
        with self._write:
            with self._cond:
                batch = list(self._pending.values())
            if not batch:
                return 0
            try:
                self.store.record_searches(batch)
            finally:
                # Written, or failed (logged by the caller): either way not retried,
                # so one bad batch cannot wedge the log.
                with self._cond:
                    for row in batch:
                        self._pending.pop(row.search_id, None)
            return len(batch)

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._stop.is_set())
            # Let a burst accumulate: one commit for every search of the interval.
            self._stop.wait(self.flush_s)
            try:
                self.flush()
            except Exception:
                log.exception("writing the search log failed; those searches take no feedback")

    def close(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout_s)
        try:
            self.flush()
        except Exception:
            log.exception("writing the last search log rows failed")
