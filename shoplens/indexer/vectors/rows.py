"""Full vectors kept for exact re-ranking: in RAM, or float16 rows read from disk.

The disk store reads rows with ``os.pread`` rather than memory-mapping the
file. Measured on Linux: touching one 2.5 KB row of a mapped file maps a whole
page-cache folio (up to ~1 MB) into the process, even with MADV_RANDOM, so a
mapped 1M x 1280-d store grew to 2.4 GB resident after 1000 queries. Reads
leave rows in the shared, reclaimable page cache instead, and the index's
resident memory stays what it keeps in RAM. ``pread`` is positional, so
concurrent searches share one descriptor without a lock.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

F32 = NDArray[np.float32]
I64 = NDArray[np.int64]
# Rows processed per step when adding, converting or copying: bounds the
# temporary float32 copies to ~300 MB at 1280-d.
ROW_CHUNK = 65_536
_F16_SCALE = np.float32(2.0**112)


def f16_bits_to_f32(bits: NDArray[np.uint16]) -> F32:
    """Exact float16 -> float32 from the raw bits, ~2.5x faster than ``astype``.

    Shifting exponent+mantissa into float32 position and scaling by 2**112
    re-biases the exponent and handles subnormals too (no inf/nan in unit
    vectors); the sign bit is copied last.
    """
    h = bits.astype(np.uint32)
    out = ((h & 0x7FFF) << 13).view(np.float32)
    out *= _F16_SCALE
    out.view(np.uint32)[...] |= (h & 0x8000) << 16
    return out


class RamRows:
    """Rows of a float32 array held in memory (the flat index's, or a copy)."""

    def __init__(self, array: F32) -> None:
        self.array = array
        self.shape: tuple[int, int] = (int(array.shape[0]), int(array.shape[1]))
        self.dtype = np.dtype(np.float32)

    def rows(self, rows: I64) -> F32:
        return np.take(self.array, rows, axis=0)

    def chunks(self, step: int) -> Iterator[NDArray[Any]]:
        for s in range(0, self.shape[0], step):
            yield self.array[s : s + step]


class DiskRows:
    """Rows of a float16 C-order .npy file, read on demand with ``pread``."""

    def __init__(self, path: Path, *, unlink: bool = False) -> None:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            self._offset = f.tell()
        if dtype != np.float16 or fortran or len(shape) != 2:
            raise ValueError(f"{path} is not a C-order 2-D float16 array")
        self.shape = (int(shape[0]), int(shape[1]))
        self.dtype = np.dtype(np.float16)
        self._row_bytes = self.shape[1] * 2
        self._fd = os.open(path, os.O_RDONLY)
        # A scratch file is unlinked at once: the descriptor keeps it alive
        # and nothing is left behind if the process dies.
        if unlink:
            os.unlink(path)
        weakref.finalize(self, os.close, self._fd)

    def _read(self, rows: I64) -> NDArray[np.uint16]:
        pread, fd, size, base = os.pread, self._fd, self._row_bytes, self._offset
        data = b"".join([pread(fd, size, base + r * size) for r in rows.tolist()])
        return np.frombuffer(data, dtype=np.uint16).reshape(rows.shape[0], self.shape[1])

    def rows(self, rows: I64) -> F32:
        return f16_bits_to_f32(self._read(rows))

    def chunks(self, step: int) -> Iterator[NDArray[Any]]:
        for s in range(0, self.shape[0], step):
            e = min(self.shape[0], s + step)
            n_bytes = (e - s) * self._row_bytes
            data = os.pread(self._fd, n_bytes, self._offset + s * self._row_bytes)
            if len(data) != n_bytes:
                raise OSError("re-rank store file is shorter than its header says")
            yield np.frombuffer(data, dtype=np.float16).reshape(e - s, self.shape[1])


RowStore = RamRows | DiskRows
