"""On-disk layout of a vector index: checksummed files plus a self-checked manifest.

Every file is hashed while it is written and verified before anything is
deserialised, because FAISS can crash (not raise) on a corrupt index file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from shoplens.errors import SnapshotError
from shoplens.files.atomic import sha256_file

MANIFEST = "vectors.json"
FORMAT_VERSION = 1


class HashingWriter:
    """A binary file that hashes what passes through it and fsyncs on close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._f: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._h = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | memoryview) -> int:
        # Byte view: len() of a typed memoryview counts items, not bytes.
        view = memoryview(data).cast("B")
        self._h.update(view)
        self.size += view.nbytes
        return self._f.write(view)

    def close(self) -> str:
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        return self._h.hexdigest()

    def __enter__(self) -> HashingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._f.closed:
            self._f.close()


def write_bytes(path: Path, data: bytes | memoryview) -> tuple[str, int]:
    with HashingWriter(path) as w:
        w.write(data)
        return w.close(), w.size


def write_npy_chunks(
    path: Path, dtype: np.dtype[Any], shape: tuple[int, ...], chunks: Iterator[NDArray[Any]]
) -> tuple[str, int]:
    """Write a C-order .npy from row chunks without holding the array in memory."""
    with HashingWriter(path) as w:
        header = {
            "descr": np.lib.format.dtype_to_descr(dtype),
            "fortran_order": False,
            "shape": shape,
        }
        np.lib.format.write_array_header_1_0(w, header)
        for chunk in chunks:
            w.write(np.ascontiguousarray(chunk, dtype=dtype).data)
        return w.close(), w.size


def _body_digest(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_manifest(directory: Path, body: dict[str, Any]) -> tuple[str, int]:
    doc = {"body": body, "body_sha256": _body_digest(body)}
    return write_bytes(directory / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest body, after checking it and every file it lists."""
    path = directory / MANIFEST
    if not path.is_file():
        raise SnapshotError(f"vector index manifest {path} is missing")
    try:
        doc = json.loads(path.read_bytes())
        body = doc["body"]
        ok = isinstance(body, dict) and doc["body_sha256"] == _body_digest(body)
    except (ValueError, KeyError, TypeError) as e:
        raise SnapshotError(f"vector index manifest {path} is unreadable: {e}") from e
    if not ok:
        raise SnapshotError(f"vector index manifest {path} is corrupt (checksum mismatch)")
    if body.get("format") != FORMAT_VERSION:
        raise SnapshotError(
            f"vector index in {directory} has format {body.get('format')!r}; "
            f"this version reads format {FORMAT_VERSION}: rebuild the index"
        )
    for name, meta in body["files"].items():
        f = directory / name
        if not f.is_file():
            raise SnapshotError(f"vector index file {f} is missing")
        if f.stat().st_size != meta["size"]:
            raise SnapshotError(
                f"vector index file {f} is truncated or altered "
                f"({f.stat().st_size} bytes, expected {meta['size']})"
            )
        if sha256_file(f) != meta["sha256"]:
            raise SnapshotError(f"vector index file {f} is corrupt (checksum mismatch)")
    checked: dict[str, Any] = body
    return checked
