"""Progress of a step that may take a while: a bar on a terminal, log lines otherwise.

A step says nothing while it is quick. Once it has run for
:data:`ANNOUNCE_AFTER_S` it shows up: a tqdm bar on stderr when that is a
terminal (and the caller allows bars), else an INFO log line naming it, with
another every :data:`LOG_EVERY_S` and one saying how long it took. Exporting
the default model (a minute), fitting a big catalog's adaptation and
embedding a catalog all go through :func:`step`; library code only logs, so a
service or a job log gets the lines and a shell gets the bars.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# A step quicker than this shows nothing (0: every step shows from its start).
ANNOUNCE_AFTER_S = 2.0
# How often a step still running says how far it got, in a log.
LOG_EVERY_S = 15.0
# How often a bar redraws its clock when nothing advances (an export).
_TICK_S = 0.5


class Step:
    """What a running step reports through: :meth:`advance` after each unit of work."""

    def __init__(self, what: str, total: int | None, unit: str, bar: bool) -> None:
        self.what = what
        self.total = total
        self.unit = unit
        self.done = 0
        self.shown = False  # announced (bar drawn or first line logged)
        self._want_bar = bar
        self._bar: Any = None
        self._started = time.perf_counter()
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def advance(self, n: int = 1) -> None:
        with self._lock:
            self.done += n
            if self._bar is not None:
                self._bar.update(n)

    def _so_far(self) -> str:
        if self.total is None:
            return f"{self.done} {self.unit}".strip() if self.done else ""
        return f"{self.done}/{self.total} {self.unit}".strip()

    def _show(self) -> None:
        with self._lock:
            self.shown = True
            if self._want_bar:
                from tqdm import tqdm

                self._bar = tqdm(
                    total=self.total,
                    initial=self.done,
                    desc=self.what,
                    unit=self.unit or "it",
                    file=sys.stderr,
                    dynamic_ncols=True,
                    # Without a total, a bar is a clock: how long it has been going.
                    bar_format=None if self.total is not None else "{desc}: {elapsed}",
                )
                return
        so_far = self._so_far()
        log.info("%s...%s", self.what, f" ({so_far})" if so_far else "")

    def _watch(self) -> None:
        """The step's own thread: shows it once it is slow, then keeps it alive."""
        if not self.shown:
            if self._stop.wait(ANNOUNCE_AFTER_S):
                return
            self._show()
        last_log = time.perf_counter()
        while not self._stop.wait(_TICK_S):
            if self._bar is not None:
                with self._lock:
                    self._bar.refresh()
            elif time.perf_counter() - last_log >= LOG_EVERY_S:
                last_log = time.perf_counter()
                log.info(
                    "%s: %s, %.0f s so far", self.what, self._so_far() or "working", self.seconds
                )

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self._started

    def _finish(self, watcher: threading.Thread) -> None:
        self._stop.set()
        watcher.join()
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self.shown:
                so_far = self._so_far()
                log.info(
                    "%s: done in %.1f s%s",
                    self.what,
                    self.seconds,
                    f" ({so_far})" if so_far else "",
                )


@contextmanager
def step(
    what: str, *, total: int | None = None, unit: str = "", bar: bool = True
) -> Iterator[Step]:
    """Run the ``with`` body as step ``what`` (``total`` units of ``unit``, if known).

    ``bar=False`` keeps to log lines even on a terminal (e.g. a command asked
    for quiet output). Nothing at all is shown for a step under
    :data:`ANNOUNCE_AFTER_S`.
    """
    current = Step(what, total, unit, bar and sys.stderr.isatty())
    if ANNOUNCE_AFTER_S <= 0:  # every step shown from its start (debugging, tests)
        current._show()
    watcher = threading.Thread(target=current._watch, name="shoplens-progress", daemon=True)
    watcher.start()
    try:
        yield current
    finally:
        current._finish(watcher)


@contextmanager
def quiet_libraries(*names: str) -> Iterator[None]:
    """Keep the INFO chatter of the libraries logging as ``names`` out of a step's
    output while it runs (the ONNX exporter logs ~200 INFO lines per export).

    ``""`` stands for records logged on the root logger itself, as ONNX Runtime's
    quantizer does: they are dropped by a filter on the root logger, which
    records of named loggers never pass through, so the rest of the program's
    logging is untouched.
    """
    saved = []
    for name in names:
        if name:
            logger = logging.getLogger(name)
            saved.append((logger, logger.level))
            logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    root_filter = _AtLeastWarning() if "" in names else None
    if root_filter is not None:
        logging.getLogger().addFilter(root_filter)
    try:
        yield
    finally:
        for logger, level in saved:
            logger.setLevel(level)
        if root_filter is not None:
            logging.getLogger().removeFilter(root_filter)


class _AtLeastWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING
