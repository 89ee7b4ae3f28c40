"""Index snapshots: immutable directories published by an atomic pointer switch.

Layout of ``data_dir/snapshots/``::

    CURRENT            the id of the live snapshot (replaced atomically; on
                       PostgreSQL a row instead, see pointer.py)
    <id>/facts.json    model, dim, preprocessing, counts, index facts, catalog
                       seq at build, created_at, sha256 of every other file
    <id>/idmap.npy     the int64 vector ids (= metadata-store image row ids)
    <id>/idmap.json    vector id -> image row (image_id, product_id, sha256)
    <id>/adapt/...     the catalog adaptation (shoplens.models.adapt), when one
                       was fitted: the index holds adapted vectors and every
                       query goes through the same projection
    <id>/...           the vector index files (VectorIndex.save)

``facts["pipeline"]`` names how photo searches run on it
(``adaptation.search_pipeline``): ``{"kind": "studio", "rerank": {...}}`` for a
catalog too thin to learn an adaptation from, whose short lists are re-ranked
by geometric verification; ``{"kind": "learnt"}`` otherwise.

Dimensions: ``facts["dim"]`` is the model's (what query vectors and the
embeddings cache have); ``facts["index_dim"]`` is the searched space's, the
adaptation's output dimension (equal to ``dim`` without an adaptation).

A snapshot is written as ``<id>.tmp/``, fsynced, renamed to ``<id>/``; only then
does the pointer (CURRENT, or the row) move. A reader therefore sees the old
snapshot or the whole new one, never a half-written one; a corrupt one is
refused by its checksums.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

from shoplens.config import Settings
from shoplens.errors import ModelMismatch, SnapshotError
from shoplens.files.atomic import fsync_dir, sha256_file
from shoplens.indexer.catalog.types import StoredImage
from shoplens.indexer.serving.adaptation import (
    ADAPT_DIR,
    PreviousFit,
    adapt_rows,
    fit_for_catalog,
    search_pipeline,
)
from shoplens.indexer.serving.pointer import (  # CURRENT, current_id: re-exported
    CURRENT as CURRENT,
)
from shoplens.indexer.serving.pointer import SnapshotPointer, publish
from shoplens.indexer.serving.pointer import current_id as current_id
from shoplens.models.adapt import Adaptation, AdaptationError
from shoplens.models.base import l2_normalise

FACTS = "facts.json"
IDMAP = "idmap.json"  # vector id -> image_id, product_id, sha256 (for people and tools)
IDMAP_VIDS = "idmap.npy"  # the vector ids alone, what loading needs
KEEP_PREVIOUS = 2
FORMAT_VERSION = 1


class SearchableIndex(Protocol):
    """The part of VectorIndex the snapshot and the live index use."""

    ntotal: int
    dim: int
    facts: dict[str, Any]

    def search(
        self, queries: NDArray[np.float32], k: int, allowed_ids: NDArray[np.int64] | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]: ...

    def reconstruct(self, ids: NDArray[np.int64]) -> NDArray[np.float32]: ...

    def save(self, directory: Path) -> dict[str, str]: ...


def _vector_index_cls() -> Any:
    # Imported on use: FAISS is heavy and `shoplens --help` must stay fast.
    from shoplens.indexer.vectors.index import VectorIndex

    return VectorIndex


@dataclass(frozen=True)
class Snapshot:
    id: str
    path: Path
    facts: dict[str, Any]
    index: SearchableIndex | None  # None when the catalog was empty
    vids: NDArray[np.int64]  # every vector id in the index, sorted
    # The projection the index's vectors went through (None: plain model space).
    adaptation: Adaptation | None = None

    @property
    def model(self) -> str:
        return str(self.facts["model"])

    @property
    def seq(self) -> int:
        return int(self.facts["catalog_seq"])

    @property
    def dim(self) -> int:
        """The model's dimension: what query vectors and stored embeddings have."""
        return int(self.facts["dim"])

    @property
    def index_dim(self) -> int:
        """The dimension of the searched (adapted) space."""
        return self.adaptation.dim_out if self.adaptation is not None else self.dim

    def to_index_space(self, vectors: NDArray[np.float32]) -> NDArray[np.float32]:
        """``(n, dim)`` model vectors -> ``(n, index_dim)`` L2-normalised search vectors."""
        x = np.asarray(vectors, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if self.adaptation is None:
            return l2_normalise(x)
        return self.adaptation.apply(x)


def new_snapshot_id() -> str:
    """Sortable by creation time, unique across concurrent writers."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{stamp}-{secrets.token_hex(3)}"


class CatalogVectors(NamedTuple):
    """What a snapshot is built from (``CatalogStore.live_vectors``): the catalog
    sequence it reflects, its live images embedded with the model (by vector
    id), and their raw model vectors in that order (None when there are none)."""

    seq: int
    images: Sequence[StoredImage]
    vectors: NDArray[np.float32] | None


def _published_fit(settings: Settings, store: SnapshotPointer | None) -> PreviousFit | None:
    """The published snapshot's adaptation facts, for reuse; None if unreadable."""
    current = current_id(settings, store)
    if current is None:
        return None
    folder = settings.snapshots_dir / current
    try:
        facts = json.loads((folder / FACTS).read_text(encoding="utf-8"))
        previous = facts.get("adaptation")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: fit again
    return PreviousFit(previous, folder) if isinstance(previous, dict) else None


def build_snapshot(
    settings: Settings,
    catalog: CatalogVectors,
    *,
    model: str,
    dim: int,
    preprocess: dict[str, Any],
    head_dims: int | None = None,
    extra_files: dict[str, bytes] | None = None,
    build_facts: dict[str, Any] | None = None,
    learn_also: tuple[NDArray[np.float32], Sequence[str]] | None = None,
    store: SnapshotPointer | None = None,
) -> str:
    """Build a snapshot of the catalog's vectors (embedded with ``model``) and publish it.

    The catalog adaptation (``shoplens.indexer.serving.adaptation``, with
    ``settings.adaptation`` and the embedder's ``head_dims``) is stored in the
    snapshot and the index is built on the adapted vectors. The embeddings
    cache keeps the raw model vectors.

    ``learn_also``: ``(raw vectors, product ids)`` the adaptation learns from
    besides the catalog's photos (shoppers' confirmed photos, from
    ``shoplens.indexer.ops.learn``); they are not search entries.

    ``store``: the catalog store, to publish through (PostgreSQL: the pointer
    row; see :mod:`.pointer`) without opening another connection.
    """
    seq, images, vectors = catalog
    snap_id = new_snapshot_id()
    root = settings.snapshots_dir
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f"{snap_id}.tmp"
    tmp.mkdir()
    try:
        files: dict[str, str] = {}
        index_facts: dict[str, Any] = {"type": "empty", "params": {}, "ntotal": 0}
        adapt_facts: dict[str, Any] | None = None
        adapt_reason: str | None = "empty catalog"
        index_dim = dim
        if vectors is not None:
            if vectors.shape[1] != dim:
                raise SnapshotError(
                    f"stored embeddings have dimension {vectors.shape[1]}, model {model} has {dim}"
                )
            ids = np.array([im.vid for im in images], dtype=np.int64)
            fit_x, fit_ids = vectors, [im.product_id for im in images]
            if learn_also is not None and len(learn_also[1]):
                fit_x = np.concatenate([vectors, np.asarray(learn_also[0], np.float32)])
                fit_ids = [*fit_ids, *learn_also[1]]
            adaptation, adapt_facts, adapt_reason = fit_for_catalog(
                settings.adaptation,
                fit_x,
                fit_ids,
                head_dims=head_dims,
                previous=_published_fit(settings, store),
            )
            if adaptation is not None:
                adaptation.save(tmp / ADAPT_DIR)
                vectors = adapt_rows(adaptation, vectors)
                index_dim = adaptation.dim_out
            index = _vector_index_cls().build(
                vectors,
                ids,
                exact_max=settings.exact_index_max,
                memory_budget_mb=settings.index_memory_budget_mb,
            )
            files.update(index.save(tmp))
            index_facts = dict(index.facts)
        with open(tmp / IDMAP_VIDS, "wb") as f:
            np.save(f, np.array([im.vid for im in images], dtype=np.int64))
        idmap = {
            "vids": [im.vid for im in images],
            "image_ids": [im.image_id for im in images],
            "product_ids": [im.product_id for im in images],
            "sha256": [im.sha256 for im in images],
        }
        for name, data in {IDMAP: json.dumps(idmap).encode(), **(extra_files or {})}.items():
            (tmp / name).write_bytes(data)
        # Checksums of what is on disk, whatever VectorIndex.save reported.
        for p in sorted(tmp.iterdir()):
            if p.is_file():
                files[p.name] = sha256_file(p)
            else:
                for sub in sorted(p.rglob("*")):
                    if sub.is_file():
                        files[str(sub.relative_to(tmp))] = sha256_file(sub)
        facts = {
            "format": FORMAT_VERSION,
            "id": snap_id,
            "model": model,
            "dim": dim,
            "index_dim": index_dim,
            "preprocess": preprocess,
            "counts": {
                "vectors": len(images),
                "images": len(images),
                "products": len({im.product_id for im in images}),
            },
            "index": index_facts,
            "adaptation": adapt_facts,
            **({"adaptation_reason": adapt_reason} if adapt_facts is None else {}),
            "pipeline": search_pipeline(adapt_facts),
            "catalog_seq": seq,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "build": build_facts or {},
            "files": files,
        }
        (tmp / FACTS).write_text(json.dumps(facts, indent=2), encoding="utf-8")
        for p in tmp.rglob("*"):
            if p.is_file():
                with open(p, "rb") as f:
                    os.fsync(f.fileno())
        fsync_dir(tmp)
        final = root / snap_id
        os.rename(tmp, final)
        fsync_dir(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    publish(settings, snap_id, store)
    prune_snapshots(settings, store=store)
    return snap_id


def prune_snapshots(
    settings: Settings,
    keep_previous: int = KEEP_PREVIOUS,
    *,
    store: SnapshotPointer | None = None,
) -> list[str]:
    """Delete snapshots older than the current one and its ``keep_previous`` predecessors."""
    root = settings.snapshots_dir
    cur = current_id(settings, store)
    if cur is None:
        return []
    ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.endswith(".tmp"))
    older = [i for i in ids if i < cur]
    doomed = older[: max(0, len(older) - keep_previous)]
    for i in doomed:
        shutil.rmtree(root / i, ignore_errors=True)
    # Leftovers of killed runs.
    for p in root.glob("*.tmp"):
        if p.is_dir() and time.time() - p.stat().st_mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)
    return doomed


def read_facts(path: Path) -> dict[str, Any]:
    try:
        facts = json.loads((path / FACTS).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SnapshotError(f"snapshot {path.name} is missing (run `shoplens index`)") from exc
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise SnapshotError(f"snapshot {path.name} has unreadable facts.json: {exc}") from exc
    if not isinstance(facts, dict) or "model" not in facts or "files" not in facts:
        raise SnapshotError(f"snapshot {path.name} has an invalid facts.json")
    return facts


def load_snapshot_dir(path: Path, expected_model: str | None) -> Snapshot:
    """Load and verify one snapshot directory."""
    facts = read_facts(path)
    if expected_model is not None and facts["model"] != expected_model:
        raise ModelMismatch(
            f"the index was built with model {facts['model']!r} but the configured model is "
            f"{expected_model!r}: re-run `shoplens index --model {expected_model}` "
            f"or set SHOPLENS_MODEL={facts['model']}"
        )
    for name, digest in facts["files"].items():
        p = path / name
        try:
            actual = sha256_file(p)
        except OSError as exc:
            raise SnapshotError(f"snapshot {path.name}: file {name} is missing") from exc
        if actual != digest:
            raise SnapshotError(f"snapshot {path.name}: file {name} is corrupt (checksum)")
    try:
        vids = np.load(path / IDMAP_VIDS, allow_pickle=False).astype(np.int64, copy=False)
    except (OSError, ValueError) as exc:
        raise SnapshotError(f"snapshot {path.name}: unreadable id map: {exc}") from exc
    index: SearchableIndex | None = None
    if int(facts["index"].get("ntotal", 0)) > 0:
        try:
            index = _vector_index_cls().load(path)
        except SnapshotError:
            raise
        except Exception as exc:  # a corrupt FAISS file raises RuntimeError
            raise SnapshotError(f"snapshot {path.name}: cannot load the index: {exc}") from exc
        if index is None or index.ntotal != len(vids):
            raise SnapshotError(f"snapshot {path.name}: index and id map disagree")
    adaptation: Adaptation | None = None
    adapt_facts = facts.get("adaptation")
    if isinstance(adapt_facts, dict):
        adaptation = _load_adaptation(path, facts, str(adapt_facts.get("dir", ADAPT_DIR)))
    if index is not None and index.dim != (adaptation.dim_out if adaptation else facts["dim"]):
        raise SnapshotError(f"snapshot {path.name}: index and adaptation dimensions disagree")
    return Snapshot(
        id=path.name,
        path=path,
        facts=facts,
        index=index,
        vids=np.sort(vids).astype(np.int64),
        adaptation=adaptation,
    )


def _load_adaptation(path: Path, facts: dict[str, Any], sub: str) -> Adaptation:
    # Its files were checksum-verified with every other file listed in facts.json.
    if not any(name.startswith(sub + "/") for name in facts["files"]):
        raise SnapshotError(f"snapshot {path.name}: the adaptation files are not listed")
    try:
        adaptation = Adaptation.load(path / sub)
    except AdaptationError as exc:
        raise SnapshotError(f"snapshot {path.name}: {exc.message}") from exc
    if adaptation.dim_in != int(facts["dim"]):
        raise SnapshotError(
            f"snapshot {path.name}: the adaptation expects dimension {adaptation.dim_in}, "
            f"the model has {facts['dim']}"
        )
    return adaptation


def load_snapshot(
    settings: Settings, expected_model: str | None, store: SnapshotPointer | None = None
) -> Snapshot:
    """The published snapshot, verified (checksums, model)."""
    cur = current_id(settings, store)
    if cur is None:
        raise SnapshotError(f"no index in {settings.data_dir}: run `shoplens index MANIFEST` first")
    return load_snapshot_dir(settings.snapshots_dir / cur, expected_model)
