"""A vector index in a directory: which files it writes, and opening them again.

The FAISS index, the row -> id array and (ANN tier only) the re-rank store,
listed with their checksums in the manifest of :mod:`files`, which are all
verified before anything is deserialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from shoplens.errors import SnapshotError
from shoplens.files.atomic import sha256_file
from shoplens.indexer.vectors import files as vf
from shoplens.indexer.vectors.plan import IndexPlan
from shoplens.indexer.vectors.rows import I64, ROW_CHUNK, DiskRows, RamRows, RowStore

_INDEX_FILE = "vectors.faiss"
_IDS_FILE = "vectors.ids.npy"
_STORE_FILE = "vectors.store.npy"


@dataclass(frozen=True)
class Loaded:
    """What a saved index is made of, as read back."""

    index: faiss.Index
    ids: I64
    store: RowStore | None
    plan: IndexPlan
    facts: dict[str, Any]


def save(
    directory: Path,
    index: faiss.Index,
    ids: I64,
    store: RowStore,
    plan: IndexPlan,
    facts: dict[str, Any],
) -> dict[str, str]:
    """Write the index files into ``directory``; returns file name -> sha256."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    path = directory / _INDEX_FILE
    faiss.write_index(index, str(path))
    files[_INDEX_FILE] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    sha, size = vf.write_npy_chunks(
        directory / _IDS_FILE, np.dtype(np.int64), (int(ids.shape[0]),), iter([ids])
    )
    files[_IDS_FILE] = {"sha256": sha, "size": size}
    if plan.rerank_store != "index":
        sha, size = vf.write_npy_chunks(
            directory / _STORE_FILE, store.dtype, store.shape, store.chunks(ROW_CHUNK)
        )
        files[_STORE_FILE] = {"sha256": sha, "size": size}
    body = {
        "format": vf.FORMAT_VERSION,
        "files": files,
        "plan": plan.to_dict(),
        "facts": facts,
    }
    sha, _ = vf.write_manifest(directory, body)
    out = {name: meta["sha256"] for name, meta in files.items()}
    out[vf.MANIFEST] = sha
    return out


def load(directory: Path) -> Loaded:
    """Read a saved index; ``SnapshotError`` if a file is missing, truncated or corrupt."""
    directory = Path(directory)
    body = vf.read_manifest(directory)  # verifies sizes and checksums first
    try:
        plan = IndexPlan(**body["plan"])
        facts = dict(body["facts"])
        index = faiss.read_index(str(directory / _INDEX_FILE))
        ids = np.load(directory / _IDS_FILE, allow_pickle=False)
        store: RowStore | None = None
        if plan.rerank_store == "ram-f32":
            store = RamRows(np.load(directory / _STORE_FILE, allow_pickle=False))
        elif plan.rerank_store == "disk-f16":
            store = DiskRows(directory / _STORE_FILE)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        raise SnapshotError(f"vector index in {directory} cannot be read: {e}") from e
    n = int(facts["ntotal"])
    if ids.dtype != np.int64 or ids.shape != (n,) or index.ntotal != n:
        raise SnapshotError(f"vector index in {directory} is inconsistent (counts differ)")
    if store is not None and store.shape != (n, int(facts["dim"])):
        raise SnapshotError(f"vector index in {directory} is inconsistent (store shape)")
    return Loaded(index, ids, store, plan, facts)
