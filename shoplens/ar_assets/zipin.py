"""Unpacking a ``.zip`` glTF upload safely (no traversal, no links, no bombs).

The zip holds one ``.gltf`` with its files, or a single ``.glb``.
"""

from __future__ import annotations

import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from shoplens.ar_assets.report import Report

MAX_ENTRIES = 2000
# A glTF's buffers and textures rarely compress more than ~20:1; zip bombs do 1000:1.
MAX_RATIO = 100
# Below this size a high ratio is harmless (a tiny all-zero buffer compresses a lot).
RATIO_MIN_BYTES = 1 << 20
USD_SUFFIXES = (".usd", ".usda", ".usdc")


@dataclass(frozen=True)
class Unpacked:
    gltf_path: Path | None  # a .gltf, or a .glb when that is all the zip holds
    usd_only: bool  # a USDZ or a zip of USD files (not a glTF at all)

    @property
    def is_glb(self) -> bool:
        return self.gltf_path is not None and self.gltf_path.suffix.lower() == ".glb"


def _bad_name(name: str) -> str | None:
    if "\\" in name:
        return "uses backslashes"
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        return "is an absolute path"
    parts = PurePosixPath(name).parts
    if ".." in parts:
        return "climbs out of the archive with '..'"
    if any(p.startswith("\x00") or "\x00" in p for p in parts):
        return "contains a NUL byte"
    return None


def unpack(data_path: Path, dest: Path, max_total: int, report: Report) -> Unpacked:
    """Extract into ``dest``, adding errors to ``report`` instead of writing anything unsafe.

    Extraction stops at the first unsafe entry; the caller checks ``report.ok``.
    """
    try:
        zf = zipfile.ZipFile(data_path)
    except (zipfile.BadZipFile, OSError) as exc:
        report.error("ZIP_INVALID", f"the zip archive cannot be read: {exc}")
        return Unpacked(None, False)
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ENTRIES:
            report.error("ZIP_TOO_MANY_ENTRIES", f"{len(infos)} entries (max {MAX_ENTRIES})")
            return Unpacked(None, False)
        declared = sum(i.file_size for i in infos)
        if declared > max_total:
            report.error(
                "ZIP_TOO_LARGE_UNCOMPRESSED",
                f"the archive expands to {declared} bytes (max {max_total})",
            )
            return Unpacked(None, False)
        for info in infos:
            name = info.filename
            why = _bad_name(name)
            mode = info.external_attr >> 16
            if why is None and stat.S_ISLNK(mode):
                why = "is a symbolic link"
            if why is None and info.flag_bits & 0x1:
                why = "is encrypted"
            if why is None and info.file_size >= RATIO_MIN_BYTES:
                ratio = info.file_size / max(info.compress_size, 1)
                if ratio > MAX_RATIO:
                    why = f"has a compression ratio of {ratio:.0f}:1 (max {MAX_RATIO}:1, zip bomb?)"
            if why is not None:
                report.error("ZIP_UNSAFE_ENTRY", f"zip entry {name!r} {why}", f"zip:{name}")
        if not report.ok:
            return Unpacked(None, False)
        written = 0
        root = dest.resolve()
        for info in infos:
            if info.is_dir() or info.filename.startswith("__MACOSX/"):
                continue
            target = (dest / info.filename).resolve()
            if root not in target.parents:
                report.error("ZIP_UNSAFE_ENTRY", f"zip entry {info.filename!r} escapes", "")
                return Unpacked(None, False)
            target.parent.mkdir(parents=True, exist_ok=True)
            # Count real bytes: the sizes in the directory can lie.
            with zf.open(info) as src, open(target, "wb") as out:
                while chunk := src.read(1 << 20):
                    written += len(chunk)
                    if written > max_total:
                        report.error(
                            "ZIP_TOO_LARGE_UNCOMPRESSED",
                            f"the archive expands past {max_total} bytes",
                        )
                        return Unpacked(None, False)
                    out.write(chunk)
        names = [
            i.filename for i in infos if not i.is_dir() and not i.filename.startswith("__MACOSX/")
        ]
    gltfs = [n for n in names if n.lower().endswith(".gltf")]
    glbs = [n for n in names if n.lower().endswith(".glb")]
    if not gltfs and len(glbs) == 1:
        # A .glb zipped for e-mail or a CMS is still one self-contained model.
        return Unpacked(dest / glbs[0], False)
    if not gltfs and len(glbs) > 1:
        report.error("ZIP_MANY_GLTF", f"the zip holds {len(glbs)} .glb files; upload one model")
        return Unpacked(None, False)
    if not gltfs:
        usd = any(n.lower().endswith(USD_SUFFIXES) for n in names)
        if not usd:
            report.error("ZIP_NO_GLTF", "the zip holds no .gltf file")
        return Unpacked(None, usd)
    if len(gltfs) > 1:
        report.error("ZIP_MANY_GLTF", f"the zip holds {len(gltfs)} .gltf files; upload one model")
        return Unpacked(None, False)
    return Unpacked(dest / gltfs[0], False)
