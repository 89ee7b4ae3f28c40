"""ArService: the AR part as the service and the CLI use it.

``ArService.open(settings)`` once per process; ``ingest`` stores an upload
(after every check passed), ``reconvert`` rebuilds a stored row's derived files
from its stored original through the same pipeline (``shoplens ar reconvert``),
``block``/``blocks`` build the public AR block.
The block adds ``anchoring`` (``plane-horizontal``, ``plane-vertical`` or
``face``, from ``anchoring.py``) beside ``placement``: where AR Quick Look
anchors the USDZ, which carries the same anchoring; and ``usdz_degraded``: the
USDZ shows less than the model (a texture or colours lost). Every ``variants``
entry has its own ``usdz_url`` (a ``KHR_materials_variants`` one: the USDZ made
with that variant's materials) and ``usdz_degraded``. ``tryon_url`` is the try-on
page (``tryon.py``) for face, head, wrist and foot placements, null for the others.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from shoplens.ar_assets.anchoring import for_placement
from shoplens.ar_assets.pipeline import Processed, process
from shoplens.ar_assets.placement import WEARABLE
from shoplens.ar_assets.report import Report
from shoplens.ar_assets.store import FILE_NAME, AssetRow, AssetStore
from shoplens.config import Settings
from shoplens.errors import BadParameter, InvalidContent, NotFound, NotReady
from shoplens.files.atomic import sha256_file
from shoplens.ids import PRODUCT_ID_RE

log = logging.getLogger(__name__)

VARIANT_NAME = re.compile(r"\A[A-Za-z0-9._:-]{1,64}\Z")
DEFAULT_VARIANT = "default"
MEDIA_TYPES = {"glb": "model/gltf-binary", "usdz": "model/vnd.usdz+zip", "zip": "application/zip"}


def check_product_id(product_id: str) -> str:
    if not PRODUCT_ID_RE.match(product_id):
        raise BadParameter("product_id must be 1-128 characters of A-Za-z0-9._:-")
    return product_id


class Catalog(Protocol):
    """Read-only product look-up; ``product`` raises ``NotFound`` for an unknown id."""

    def product(self, product_id: str) -> tuple[Any, Any]: ...


def in_catalog(catalog: Catalog | None, product_id: str) -> bool | None:
    """Whether ``catalog`` has the product; None when there is no catalog to ask."""
    if catalog is None:
        return None
    try:
        catalog.product(product_id)
    except NotFound:
        return False
    return True


def require_product(product_id: str, known: bool | None) -> str:
    """A 3D model attaches to a product of the catalog, so that a typo in an id is
    refused instead of storing an asset nobody can find (the HTTP route and
    ``shoplens ar add`` alike). ``known``: :func:`in_catalog`'s answer."""
    check_product_id(product_id)
    if known is None:
        raise NotReady(
            f"the catalog is not loaded, so product {product_id!r} cannot be checked; "
            "nothing was stored: retry once /readyz answers 200"
        )
    if not known:
        raise NotFound(
            f"product {product_id!r} does not exist; nothing was stored: add the product "
            f"to the catalog first (shoplens index, or PUT /v1/products/{product_id})"
        )
    return product_id


def check_variant(variant: str | None) -> str:
    name = variant or DEFAULT_VARIANT
    if not VARIANT_NAME.match(name):
        raise BadParameter("variant must be 1-64 characters of A-Za-z0-9._:-")
    return name


class ArService:
    # Each upload runs Node (a few hundred MB each for big models) and pxr: bound how
    # many run at once so a burst of uploads queues instead of exhausting memory.
    MAX_CONCURRENT_UPLOADS = 2

    def __init__(self, settings: Settings, store: AssetStore) -> None:
        self.settings = settings
        self.store = store
        self._slots = threading.BoundedSemaphore(self.MAX_CONCURRENT_UPLOADS)

    @classmethod
    def open(cls, settings: Settings) -> ArService:
        store = AssetStore(settings.assets_dir, settings.database(settings.db_path))
        _remove_stale_temporaries(settings.assets_dir)
        return cls(settings, store)

    def close(self) -> None:
        self.store.close()

    # ------------------------------------------------------------ writes
    def ingest(
        self,
        product_id: str,
        upload: Path,
        *,
        original_name: str = "",
        placement: str = "floor",
        variant: str | None = None,
    ) -> tuple[AssetRow, Report]:
        """Check, convert and store ``upload``; raises (and stores nothing) if refused."""
        check_product_id(product_id)
        name = check_variant(variant)
        tmp_root = self.settings.assets_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with self._slots, tempfile.TemporaryDirectory(dir=tmp_root, prefix="upload-") as tmp:
            done = process(upload, placement, self.settings.max_asset_bytes, Path(tmp))
            row, staged = _row_of(
                done, product_id, name, placement, original_name or upload.name, time.time()
            )
            self.store.save(row, staged)
        report = done.report
        log.info("AR asset stored for %s/%s: %s", product_id, name, report.summary())
        return row, report

    def reconvert(self, old: AssetRow) -> tuple[AssetRow, Report]:
        """Rebuild ``old``'s derived files from its stored original, as an upload would.

        Same ``process`` as ``ingest``, with the stored placement, variant, name and
        upload time. Raises (and changes nothing) if the original is not stored, is
        refused, the new recipe would drop a file the asset has (a USDZ, a mobile
        variant: e.g. the Node tools are missing here), or the row changed meanwhile.
        """
        source = self.store.path(old.source_sha, old.source_ext)
        if not source.is_file():
            raise NotFound(f"the original upload is not stored ({source.name} is missing)")
        tmp_root = self.settings.assets_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with self._slots, tempfile.TemporaryDirectory(dir=tmp_root, prefix="reconvert-") as tmp:
            copy = Path(tmp) / f"original.{old.source_ext}"
            try:  # a concurrent upload may collect it: then the row has changed anyway
                shutil.copyfile(source, copy)
            except FileNotFoundError:
                raise NotFound("the original upload is not stored any more") from None
            if sha256_file(copy) != old.source_sha:
                raise InvalidContent(
                    f"the stored original {source.name} does not match its sha256 (damaged)"
                )
            done = process(copy, old.placement, self.settings.max_asset_bytes, Path(tmp))
            row, staged = _row_of(
                done, old.product_id, old.variant, old.placement, old.original_name, old.created_at
            )
            if old.usdz_sha and row.usdz_sha is None:
                raise InvalidContent(f"no USDZ made any more: {_why_not(done.report, 'USDZ_')}")
            if old.mobile_sha != old.glb_sha and row.mobile_sha == row.glb_sha:
                raise InvalidContent(
                    "no mobile variant made any more (are the Node tools installed?)"
                )
            self.store.save(row, staged, replacing=old)
        log.info(
            "AR asset rebuilt for %s/%s: %s", row.product_id, row.variant, done.report.summary()
        )
        return row, done.report

    def all_rows(self) -> list[AssetRow]:
        return self.store.all_rows()

    def delete(self, product_id: str, variant: str | None = None) -> int:
        check_product_id(product_id)
        n = self.store.delete(product_id, check_variant(variant) if variant else None)
        if n == 0:
            raise NotFound(f"product {product_id!r} has no AR model")
        return n

    def forget_product(self, product_id: str) -> int:
        """Remove every AR model of a product removed from the catalog (0 if it had none).

        Kept, they would be stored but unreachable from any answer: orphans. Their
        files go with the rows unless another row shares them (the store collects).
        """
        n = self.store.delete(check_product_id(product_id))
        if n:
            log.info("removed %d AR model(s) of deleted product %s", n, product_id)
        return n

    # ------------------------------------------------------------ reads
    def file_path(self, name: str) -> tuple[Path, str, str]:
        """(path, media type, etag) of a stored file; NotFound for anything else."""
        m = FILE_NAME.match(name)
        if m is None:
            raise NotFound("no such AR file")
        path = self.store.path(m.group(1), m.group(2))
        if not path.is_file():
            raise NotFound("no such AR file")
        return path, MEDIA_TYPES[m.group(2)], m.group(1)

    def block(self, product_id: str, base_url: str, variant: str | None = None) -> dict[str, Any]:
        check_product_id(product_id)
        rows = self.store.rows([product_id])
        out = _blocks(rows, base_url.rstrip("/"), variant)
        if product_id not in out:
            raise NotFound(
                f"product {product_id!r} has no AR model"
                + (f" variant {variant!r}" if variant else "")
            )
        return out[product_id]

    def blocks(self, product_ids: list[str], base_url: str) -> dict[str, dict[str, Any]]:
        """AR blocks of the given products that have one (others are absent)."""
        ids = [p for p in product_ids if PRODUCT_ID_RE.match(p)]
        return _blocks(self.store.rows(ids), base_url.rstrip("/"), None)

    def rows(self, product_id: str) -> list[AssetRow]:
        return self.store.rows([product_id])


def _row_of(
    done: Processed,
    product_id: str,
    variant: str,
    placement: str,
    original_name: str,
    created_at: float,
) -> tuple[AssetRow, dict[tuple[str, str], Path]]:
    """The row and the files to stage for a processed upload (ingest and reconvert alike)."""
    stats = done.report.stats
    src_sha, src_ext, src_path = done.source
    staged = {
        (src_sha, src_ext): src_path,
        (done.glb[0], "glb"): done.glb[1],
        (done.mobile[0], "glb"): done.mobile[1],
    }
    if done.usdz:
        staged[(done.usdz[0], "usdz")] = done.usdz[1]
    for sha, path in done.variant_usdz.values():
        staged[(sha, "usdz")] = path
    row = AssetRow(
        product_id=product_id,
        variant=variant,
        placement=placement,
        original_name=original_name,
        source_sha=src_sha,
        source_ext=src_ext,
        glb_sha=done.glb[0],
        mobile_sha=done.mobile[0],
        usdz_sha=done.usdz[0] if done.usdz else None,
        dims=dict(stats.get("dimensions_m", {"x": 0.0, "y": 0.0, "z": 0.0})),
        triangles=int(stats.get("triangles", 0)),
        bytes=int(stats["bytes"]),
        mobile_bytes=int(stats["mobile_bytes"]),
        material_variants=list(stats.get("variants", [])),
        report=done.report.to_dict(),
        created_at=created_at,
        variant_usdz={name: sha for name, (sha, _) in done.variant_usdz.items()},
    )
    return row, staged


def _why_not(report: Report, prefix: str) -> str:
    notes = [w.message for w in report.warnings if w.code.startswith(prefix)]
    return "; ".join(notes) or "no reason given"


def _remove_stale_temporaries(assets_dir: Path, max_age_s: float = 6 * 3600) -> None:
    """Leftovers of uploads killed mid-way (never those of uploads still running)."""
    cutoff = time.time() - max_age_s
    candidates = [*assets_dir.glob(".tmp-*"), *(assets_dir / "tmp").glob("*")]
    for p in candidates:
        try:
            if p.stat().st_mtime >= cutoff:
                continue
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        except OSError:
            continue


def _file_url(base: str, sha: str, ext: str) -> str:
    return f"{base}/ar/files/{sha}.{ext}"


def viewer_url(base: str, product_id: str, variant: str | None = None) -> str:
    url = f"{base}/ar/view/{quote(product_id, safe='')}"
    return url if not variant or variant == DEFAULT_VARIANT else f"{url}?variant={quote(variant)}"


def tryon_url(base: str, product_id: str, placement: str, variant: str | None = None) -> str | None:
    """The try-on page (``tryon.py``); None for floor, wall and table placements."""
    if placement not in WEARABLE:
        return None
    url = f"{base}/ar/try/{quote(product_id, safe='')}"
    return url if not variant or variant == DEFAULT_VARIANT else f"{url}?variant={quote(variant)}"


def intent_url(mobile_url: str, fallback: str, title: str, placement: str) -> str:
    params = f"file={quote(mobile_url, safe='')}&mode=ar_preferred&title={quote(title, safe='')}"
    if placement == "wall":
        params += "&enable_vertical_placement=true"
    return (
        f"intent://arvr.google.com/scene-viewer/1.0?{params}#Intent;scheme=https;"
        "package=com.google.ar.core;action=android.intent.action.VIEW;"
        f"S.browser_fallback_url={quote(fallback, safe='')};end;"
    )


def usdz_degraded(report: dict[str, Any], material_variant: str | None = None) -> bool:
    """Whether the (variant's) USDZ lost a texture or colours (``fidelity.usdz_section``)."""
    section = report.get("usdz")
    if not isinstance(section, dict):
        return False  # rows from before the USDZ section: never checked
    if material_variant is not None:
        section = (section.get("variants") or {}).get(material_variant) or {}
    return bool(section.get("degraded", False))


def _urls(row: AssetRow, base: str) -> dict[str, Any]:
    mobile = _file_url(base, row.mobile_sha, "glb")
    viewer = viewer_url(base, row.product_id, row.variant)
    return {
        "glb_url": _file_url(base, row.glb_sha, "glb"),
        "glb_mobile_url": mobile,
        "usdz_url": _file_url(base, row.usdz_sha, "usdz") if row.usdz_sha else None,
        "usdz_degraded": usdz_degraded(row.report),
        "viewer_url": viewer,
        "android_intent_url": intent_url(mobile, viewer, row.product_id, row.placement),
        "tryon_url": tryon_url(base, row.product_id, row.placement, row.variant),
    }


def _with_material(url: str | None, name: str) -> str | None:
    """``url`` opening on the KHR_materials_variants variant ``name``."""
    if url is None:
        return None
    return f"{url}{'&' if '?' in url else '?'}material_variant={quote(name)}"


def _blocks(rows: Sequence[AssetRow], base: str, variant: str | None) -> dict[str, dict[str, Any]]:
    by_product: dict[str, list[AssetRow]] = {}
    for r in rows:
        by_product.setdefault(r.product_id, []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for pid, prow in by_product.items():
        wanted = variant or DEFAULT_VARIANT
        main = next((r for r in prow if r.variant == wanted), None)
        if main is None and variant is None:
            main = prow[0]  # no default upload: the first named variant stands in
        if main is None:
            continue
        variants: list[dict[str, Any]] = []
        for r in prow:
            if r is main:
                continue
            variants.append(
                {
                    "name": r.variant,
                    "source": "upload",
                    "placement": r.placement,
                    "anchoring": for_placement(r.placement).label,
                    "dimensions_m": r.dims,
                    "triangles": r.triangles,
                    "bytes": r.bytes,
                    **_urls(r, base),
                }
            )
        main_urls = _urls(main, base)
        for name in main.material_variants:
            variants.append(
                {
                    "name": name,
                    "source": "KHR_materials_variants",
                    "glb_url": main_urls["glb_url"],
                    "glb_mobile_url": main_urls["glb_mobile_url"],
                    # Quick Look has no variant switch: each variant has a USDZ of its own.
                    "usdz_url": _file_url(base, main.variant_usdz[name], "usdz")
                    if name in main.variant_usdz
                    else None,
                    "usdz_degraded": usdz_degraded(main.report, name),
                    "viewer_url": _with_material(main_urls["viewer_url"], name),
                    "tryon_url": _with_material(main_urls["tryon_url"], name),
                }
            )
        out[pid] = {
            **main_urls,
            "placement": main.placement,
            "anchoring": for_placement(main.placement).label,
            "dimensions_m": main.dims,
            "triangles": main.triangles,
            "bytes": main.bytes,
            "mobile_bytes": main.mobile_bytes,
            "variant": main.variant,
            "variants": variants,
        }
    return out
