"""Content-addressed AR files plus their metadata rows.

Files are ``<sha256>.<ext>`` under ``settings.assets_dir`` (shared by every
replica), written atomically and never modified. Rows live in this part's own
table, ``ar_assets``, in the catalog database (``catalog.db``, or the shared
PostgreSQL database: :class:`shoplens.db.Database`, store name ``ar``, schema
as versioned migrations of component ``ar``). A row is swapped only after its
files are in place, so readers see the old asset or the new one, never half
of either. Garbage collection and the "are my files still there" check of an
upload both run inside the store's write transaction (SQLite's write lock, or
the store's advisory lock on PostgreSQL), which makes them safe against each
other, across processes and replicas too.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shoplens.ar_assets.row_cache import RowCache
from shoplens.db import Conn, Database
from shoplens.db.migrations import Migration, migrate
from shoplens.files.atomic import fsync_dir

FILE_NAME = re.compile(r"\A([0-9a-f]{64})\.(glb|usdz|zip)\Z")
EXTS = ("glb", "usdz", "zip")

SCHEMA = """
CREATE TABLE IF NOT EXISTS ar_assets (
    product_id     TEXT NOT NULL,
    variant        TEXT NOT NULL,
    placement      TEXT NOT NULL,
    original_name  TEXT NOT NULL,
    source_sha     TEXT NOT NULL,   -- the upload as received (.glb or .zip)
    source_ext     TEXT NOT NULL,
    glb_sha        TEXT NOT NULL,   -- served as glb_url
    mobile_sha     TEXT NOT NULL,   -- = glb_sha when no smaller valid variant was made
    usdz_sha       TEXT,            -- NULL when no Quick Look file could be made
    dims_json      TEXT NOT NULL,
    triangles      INTEGER NOT NULL,
    bytes          INTEGER NOT NULL,
    mobile_bytes   INTEGER NOT NULL,
    material_variants_json TEXT NOT NULL,
    report_json    TEXT NOT NULL,
    created_at     REAL NOT NULL,
    PRIMARY KEY (product_id, variant)
);
"""
# Added after the first release: {material variant name: sha256 of its USDZ}.
# Databases from before get the column (empty) when the store opens.
VARIANT_USDZ_COLUMN = "variant_usdz_json"
COMPONENT = "ar"
COLUMNS = (
    "product_id",
    "variant",
    "placement",
    "original_name",
    "source_sha",
    "source_ext",
    "glb_sha",
    "mobile_sha",
    "usdz_sha",
    "dims_json",
    "triangles",
    "bytes",
    "mobile_bytes",
    "material_variants_json",
    "report_json",
    "created_at",
    VARIANT_USDZ_COLUMN,
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM ar_assets"
_UPSERT = (
    f"INSERT INTO ar_assets ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT (product_id, variant) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS[2:])
)


def _add_variant_usdz(db: Database, c: Conn) -> None:
    db.add_column(c, "ar_assets", VARIANT_USDZ_COLUMN, "TEXT NOT NULL DEFAULT '{}'")


# One row, bumped by every save and delete: what replicas' row caches watch.
CHANGES = "CREATE TABLE IF NOT EXISTS ar_changes (id INTEGER PRIMARY KEY, seq INTEGER NOT NULL);"
_BUMP = (
    "INSERT INTO ar_changes (id, seq) VALUES (1, 1) "
    "ON CONFLICT (id) DO UPDATE SET seq = ar_changes.seq + 1"
)

MIGRATIONS = (
    Migration(1, "ar_assets table", SCHEMA),
    Migration(2, "material variant USDZ files", _add_variant_usdz),
    Migration(3, "ar change counter", CHANGES),
)


@dataclass(frozen=True)
class AssetRow:
    product_id: str
    variant: str
    placement: str
    original_name: str
    source_sha: str
    source_ext: str
    glb_sha: str
    mobile_sha: str
    usdz_sha: str | None
    dims: dict[str, float]
    triangles: int
    bytes: int
    mobile_bytes: int
    material_variants: list[str]
    report: dict[str, Any]
    created_at: float
    variant_usdz: dict[str, str] = field(default_factory=dict)  # material variant -> sha

    def shas(self) -> set[tuple[str, str]]:
        out = {(self.source_sha, self.source_ext), (self.glb_sha, "glb"), (self.mobile_sha, "glb")}
        if self.usdz_sha:
            out.add((self.usdz_sha, "usdz"))
        out.update((sha, "usdz") for sha in self.variant_usdz.values())
        return out


class StaleRow(Exception):
    """The row to replace is no longer the stored one."""


class AssetStore:
    """``target``: the SQLite file (the data dir's ``catalog.db``) or a PostgreSQL URL."""

    def __init__(self, files_dir: Path, target: Path | str) -> None:
        self.files_dir = files_dir
        files_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(target, name=COMPONENT, timeout_s=30.0, synchronous="NORMAL")
        try:
            migrate(self.db, COMPONENT, MIGRATIONS)
        except BaseException:
            self.db.close()
            raise
        # Shared database: AR rows are read on every search answer; cache them
        # (shoplens.ar_assets.row_cache). SQLite reads stay direct, as before.
        self._cache: RowCache[AssetRow] | None = None
        if self.db.is_postgres:
            self._cache = RowCache(self._load, self._seq, lambda r: r.product_id)

    def _seq(self) -> int:
        with self.db.locked() as db:
            row = db.execute("SELECT seq FROM ar_changes WHERE id = 1").fetchone()
        return 0 if row is None else int(row[0])

    def _load(self, product_ids: list[str]) -> list[AssetRow]:
        with self.db.locked() as db:
            return self._rows(db, product_ids)

    def _changed(self) -> None:
        if self._cache is not None:
            self._cache.invalidate()

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------ files
    def path(self, sha: str, ext: str) -> Path:
        return self.files_dir / f"{sha}.{ext}"

    def put_file(self, src: Path, sha: str, ext: str) -> Path:
        """Copy ``src`` to its content address atomically (tmp + fsync + rename)."""
        final = self.path(sha, ext)
        try:
            # stat() alone, not is_file() then stat(): a concurrent garbage
            # collection may remove the file between two calls.
            if final.stat().st_size == src.stat().st_size:
                return final
        except FileNotFoundError:
            pass
        tmp = self.files_dir / (
            f".tmp-{os.getpid()}-{threading.get_ident()}-{time.monotonic_ns()}-{sha[:12]}.{ext}"
        )
        try:
            with open(src, "rb") as fin, open(tmp, "wb") as fout:
                while chunk := fin.read(1 << 20):
                    fout.write(chunk)
                fout.flush()
                os.fsync(fout.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        fsync_dir(self.files_dir, best_effort=True)
        return final

    # ------------------------------------------------------------ rows
    def save(
        self,
        row: AssetRow,
        staged: dict[tuple[str, str], Path],
        *,
        replacing: AssetRow | None = None,
    ) -> None:
        """Swap in ``row`` once its files exist; collect the files the old row leaves behind.

        With ``replacing``, swap only if the stored row is still exactly that one
        (a rebuild must not overwrite an upload that came in meanwhile): else
        ``StaleRow`` is raised, nothing changes, and the staged files no row
        uses are removed again.
        """
        for (sha, ext), src in staged.items():
            self.put_file(src, sha, ext)
        stale = False
        with self.db.transaction() as db:
            old = self._get(db, row.product_id, row.variant)
            if replacing is not None and old != replacing:
                # Committed (not rolled back): the staged files no row uses are gone.
                self._collect(db, set(staged))
                stale = True
            else:
                # A concurrent GC may have removed a file equal to ours before we got the lock.
                for (sha, ext), src in staged.items():
                    if not self.path(sha, ext).is_file():
                        self.put_file(src, sha, ext)
                db.execute(
                    _UPSERT,
                    (
                        row.product_id,
                        row.variant,
                        row.placement,
                        row.original_name,
                        row.source_sha,
                        row.source_ext,
                        row.glb_sha,
                        row.mobile_sha,
                        row.usdz_sha,
                        json.dumps(row.dims),
                        row.triangles,
                        row.bytes,
                        row.mobile_bytes,
                        json.dumps(row.material_variants),
                        json.dumps(row.report),
                        row.created_at,
                        json.dumps(row.variant_usdz, sort_keys=True),
                    ),
                )
                if old is not None:
                    self._collect(db, old.shas())
                db.execute(_BUMP)
        self._changed()
        if stale:
            raise StaleRow(f"{row.product_id}/{row.variant} changed while it was being rebuilt")

    def delete(self, product_id: str, variant: str | None = None) -> int:
        """Remove the product's rows (one variant or all); returns how many."""
        with self.db.transaction() as db:
            rows = [
                r for r in self._rows(db, [product_id]) if variant is None or r.variant == variant
            ]
            for r in rows:
                db.execute(
                    "DELETE FROM ar_assets WHERE product_id=? AND variant=?",
                    (r.product_id, r.variant),
                )
            self._collect(db, set().union(*(r.shas() for r in rows)) if rows else set())
            if rows:
                db.execute(_BUMP)
        self._changed()
        return len(rows)

    def _collect(self, db: Conn, candidates: set[tuple[str, str]]) -> None:
        for sha, ext in candidates:
            # sha is 64 hex digits (FILE_NAME), so LIKE needs no escaping.
            used = db.execute(
                "SELECT 1 FROM ar_assets WHERE source_sha=? OR glb_sha=? OR mobile_sha=? "
                f"OR usdz_sha=? OR {VARIANT_USDZ_COLUMN} LIKE ? LIMIT 1",
                (sha, sha, sha, sha, f'%"{sha}"%'),
            ).fetchone()
            if used is None:
                self.path(sha, ext).unlink(missing_ok=True)

    def rows(self, product_ids: Sequence[str]) -> list[AssetRow]:
        if self._cache is not None:
            found = self._cache.rows(product_ids)
            return sorted(found, key=lambda r: (r.product_id, r.variant))
        return self._load(list(product_ids))

    def all_rows(self) -> list[AssetRow]:
        """Every stored row, by product id and variant."""
        with self.db.read() as db:
            ids = [r[0] for r in db.execute("SELECT DISTINCT product_id FROM ar_assets")]
            return self._rows(db, sorted(ids))

    def get(self, product_id: str, variant: str) -> AssetRow | None:
        with self.db.locked() as db:
            return self._get(db, product_id, variant)

    def _get(self, db: Conn, product_id: str, variant: str) -> AssetRow | None:
        rows = [r for r in self._rows(db, [product_id]) if r.variant == variant]
        return rows[0] if rows else None

    def _rows(self, db: Conn, product_ids: Sequence[str]) -> list[AssetRow]:
        out: list[AssetRow] = []
        ids = list(dict.fromkeys(product_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            cur = db.execute(
                f"{_SELECT} WHERE product_id IN ({marks}) ORDER BY product_id, variant",
                chunk,
            )
            for r in cur.fetchall():
                out.append(
                    AssetRow(
                        product_id=r[0],
                        variant=r[1],
                        placement=r[2],
                        original_name=r[3],
                        source_sha=r[4],
                        source_ext=r[5],
                        glb_sha=r[6],
                        mobile_sha=r[7],
                        usdz_sha=r[8],
                        dims=json.loads(r[9]),
                        triangles=r[10],
                        bytes=r[11],
                        mobile_bytes=r[12],
                        material_variants=json.loads(r[13]),
                        report=json.loads(r[14]),
                        created_at=r[15],
                        variant_usdz=json.loads(r[16]),
                    )
                )
        return out
