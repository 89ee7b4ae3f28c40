"""A tiny exact index with VectorIndex's interface, used only until vectors.py lands."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from shoplens.errors import SnapshotError


class FlatIndex:
    def __init__(self, vectors: NDArray[np.float32], ids: NDArray[np.int64]) -> None:
        self._x = np.ascontiguousarray(vectors, dtype=np.float32)
        self._ids = np.ascontiguousarray(ids, dtype=np.int64)
        self.ntotal = int(self._x.shape[0])
        self.dim = int(self._x.shape[1]) if self._x.ndim == 2 else 0
        self._pos = {int(v): i for i, v in enumerate(self._ids)}
        self.facts: dict[str, Any] = {
            "type": "flat-numpy",
            "params": {},
            "ntotal": self.ntotal,
            "dim": self.dim,
            "bytes": int(self._x.nbytes),
        }

    @classmethod
    def build(
        cls,
        vectors: NDArray[np.float32],
        ids: NDArray[np.int64],
        *,
        exact_max: int = 0,
        memory_budget_mb: int = 0,
    ) -> FlatIndex:
        return cls(vectors, ids)

    def search(
        self,
        queries: NDArray[np.float32],
        k: int,
        allowed_ids: NDArray[np.int64] | None = None,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        q = np.atleast_2d(np.asarray(queries, np.float32))
        if allowed_ids is None:
            x, ids = self._x, self._ids
        else:
            rows = np.array(
                [self._pos[int(i)] for i in allowed_ids if int(i) in self._pos], dtype=np.int64
            )
            x, ids = self._x[rows], self._ids[rows]
        scores_out = np.full((q.shape[0], k), -np.inf, dtype=np.float32)
        ids_out = np.full((q.shape[0], k), -1, dtype=np.int64)
        if len(ids) == 0:
            return scores_out, ids_out
        s = q @ x.T
        kk = min(k, s.shape[1])
        top = np.argsort(-s, axis=1, kind="stable")[:, :kk]
        scores_out[:, :kk] = np.take_along_axis(s, top, axis=1)
        ids_out[:, :kk] = ids[top]
        return scores_out, ids_out

    def reconstruct(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        return self._x[[self._pos[int(i)] for i in ids]]

    def save(self, directory: Path) -> dict[str, str]:
        out = {}
        for name, arr in (("flat_vectors.npy", self._x), ("flat_ids.npy", self._ids)):
            with open(directory / name, "wb") as f:
                np.save(f, arr)
            out[name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
        return out

    @classmethod
    def load(cls, directory: Path) -> FlatIndex:
        try:
            return cls(np.load(directory / "flat_vectors.npy"), np.load(directory / "flat_ids.npy"))
        except (OSError, ValueError) as exc:
            raise SnapshotError(f"cannot read the vector index in {directory}: {exc}") from exc
