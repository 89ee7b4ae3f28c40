"""An embedder that holds an indexing run part-way, so a test stops or kills it
there every time rather than racing a run that may already have finished."""

from __future__ import annotations

import threading

from PIL import Image

from shoplens.models.base import EmbedderBase, FloatArray, ImageEmbedder


class HeldEmbedder(EmbedderBase):
    """Embeds with ``inner``; the indexing batch after the first ``after`` ones waits
    in :meth:`embed_prepared` until :meth:`release`, so while :attr:`held` is set
    exactly ``after`` batches are committed and the run is still going.

    Only batches of several photos count: a service embeds each search photo (and
    its warm-up image) alone, and those must never wait. ``timeout_s`` bounds the
    wait, so a test that forgets to release (or to kill) cannot hang the run.
    """

    def __init__(self, inner: ImageEmbedder, after: int, timeout_s: float = 300.0) -> None:
        self.inner = inner
        self._name, self._dim, self._cfg = inner.name, inner.dim, inner.preprocess_config
        self.after = after
        self.timeout_s = timeout_s
        self.held = threading.Event()
        self._released = threading.Event()
        self._lock = threading.Lock()
        self._batches = 0

    def prepare(self, image: Image.Image) -> FloatArray:
        return self.inner.prepare(image)

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        if len(batch) > 1:
            with self._lock:
                number = self._batches
                self._batches += 1
            if number == self.after:
                self.held.set()
                if not self._released.wait(self.timeout_s):
                    raise TimeoutError(f"held for {self.timeout_s} s and never released")
        return self.inner.embed_prepared(batch)

    def release(self) -> None:
        """Let the held batch (and every later one) through."""
        self._released.set()
