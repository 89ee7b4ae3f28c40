"""Change notifications between processes sharing one database.

On PostgreSQL a writer calls :func:`notify` inside its transaction (delivered
at commit, dropped on rollback) and every replica's :class:`Listener` wakes at
once. Notifications are a latency shortcut, never the only path: the listener
also calls back every ``poll_s`` seconds (and SQLite has no notifications at
all), so a replica whose connection dropped still catches up by polling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from shoplens.db.database import Conn, is_postgres_url

log = logging.getLogger(__name__)

CATALOG_CHANNEL = "shoplens_catalog"
# How often a listener waiting for notifications looks whether it was stopped.
_STOP_CHECK_S = 0.2


def notify(conn: Conn, is_postgres: bool, channel: str, payload: str = "") -> None:
    """Tell the other replicas (at commit) that ``channel`` changed."""
    if is_postgres:
        conn.execute("SELECT pg_notify(?, ?)", (channel, payload))


class Listener:
    """Calls ``on_change`` when a channel is notified, and every ``poll_s`` anyway."""

    def __init__(
        self,
        target: Path | str,
        channels: Sequence[str],
        on_change: Callable[[], None],
        *,
        poll_s: float = 0.5,
        call_on_poll: bool = True,
    ) -> None:
        self._target = target
        self._channels = list(channels)
        self._on_change = on_change
        self._poll_s = poll_s
        # False where the caller polls on its own (the service's reload loop):
        # then only notifications (and the catch-up after a (re)connect) call back.
        self._call_on_poll = call_on_poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shoplens-listener", daemon=True)
        self.listening = False  # True while a PostgreSQL LISTEN is active

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _call(self) -> None:
        try:
            self._on_change()
        except Exception:  # a failed refresh must not end the loop; next poll retries
            log.exception("change callback failed")

    def _run(self) -> None:
        while not self._stop.is_set():
            if is_postgres_url(self._target):
                try:
                    self._listen()
                except Exception as exc:  # connection lost: poll until it is back
                    self.listening = False
                    log.warning("LISTEN connection lost (%s); polling", exc)
            if self._stop.wait(self._poll_s):
                return
            if self._call_on_poll:
                self._call()

    def _listen(self) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(str(self._target), autocommit=True, connect_timeout=5) as conn:
            for channel in self._channels:
                conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
            self.listening = True
            self._call()  # catch up on what changed while not listening
            last = time.monotonic()
            while not self._stop.is_set():
                # Wake on the first notification, or to look at the stop flag
                # (stop() must not wait out a long poll_s), then take in the
                # rest of a burst (a batch of edits) with one refresh.
                woken = False
                for _ in conn.notifies(timeout=min(self._poll_s, _STOP_CHECK_S), stop_after=1):
                    woken = True
                if woken:
                    for _ in conn.notifies(timeout=0.01):
                        pass
                if woken or (self._call_on_poll and time.monotonic() - last >= self._poll_s):
                    last = time.monotonic()
                    self._call()
        self.listening = False
