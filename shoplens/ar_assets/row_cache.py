"""AR rows by product id, cached per process over a shared (PostgreSQL) database.

Every search answer carries the AR blocks of its products, so reading them is
on the search path. Over PostgreSQL that read is a network round trip and a
turn on the store's one connection; the cache takes it off: a product's rows
(or that it has none) are kept until the store's change counter
(``ar_changes.seq``, bumped by every save and delete, on any replica) moves.
The counter is read at most once per ``check_s`` (0.5 s): an AR upload on one
replica shows in the others' answers within that, as the catalog's follow
loop does. This process's own writes clear the cache at once.

Bounded: past ``max_products`` the least recently used products are forgotten.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

CHECK_S = 0.5
MAX_PRODUCTS = 10_000


class RowCache(Generic[T]):
    def __init__(
        self,
        load: Callable[[list[str]], list[T]],
        read_seq: Callable[[], int],
        key: Callable[[T], str],
        *,
        check_s: float = CHECK_S,
        max_products: int = MAX_PRODUCTS,
    ) -> None:
        self._load = load
        self._read_seq = read_seq
        self._key = key
        self.check_s = check_s
        self.max_products = max_products
        self._lock = threading.Lock()
        self._rows: OrderedDict[str, list[T]] = OrderedDict()
        self._seq: int | None = None
        self._generation = 0  # moves on every clear: loads begun before it are dropped
        self._checked = float("-inf")

    def invalidate(self) -> None:
        with self._lock:
            self._rows.clear()
            self._generation += 1
            self._checked = float("-inf")

    def _revalidate(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._checked < self.check_s:
                return
            self._checked = now
        seq = self._read_seq()
        with self._lock:
            if seq != self._seq:
                self._rows.clear()
                self._generation += 1
                self._seq = seq

    def rows(self, product_ids: Sequence[str]) -> list[T]:
        """The rows of these products, as ``load`` would return them."""
        self._revalidate()
        found: list[T] = []
        missing: list[str] = []
        with self._lock:
            generation = self._generation
            for pid in dict.fromkeys(product_ids):
                hit = self._rows.get(pid)
                if hit is None:
                    missing.append(pid)
                else:
                    self._rows.move_to_end(pid)
                    found.extend(hit)
        if missing:
            loaded = self._load(missing)
            found.extend(loaded)
            by_product: dict[str, list[T]] = {pid: [] for pid in missing}
            for row in loaded:
                by_product[self._key(row)].append(row)
            with self._lock:
                if generation == self._generation:  # no change landed meanwhile
                    self._rows.update(by_product)
                    while len(self._rows) > self.max_products:
                        self._rows.popitem(last=False)
        return found
