"""Files that are either the old version or the whole new one, and their sha256.

Every part of Shoplens writes through :func:`write_atomic` and hashes through
:func:`sha256_file`, so the temporary-file names that cleanup code relies on
and the durability rules live in one place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

_CHUNK = 1 << 20


def write_atomic(path: Path, data: bytes, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one.

    The temporary file is ``.<name>.<pid>.<thread id>.tmp`` beside ``path``: one
    per writing thread, and dot-named, so the size-bounded caches
    (:mod:`shoplens.files.disk_lru`) never count it and ``shoplens gc`` sweeps a
    killed writer's leftover by that pattern. ``fsync=False`` where a torn file
    after a power loss is detected and written again anyway (a photo whose
    embedding is keyed by its source bytes, a cache entry with a checksum).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def fsync_dir(path: Path, *, best_effort: bool = False) -> None:
    """Make the entries of directory ``path`` (a rename, a new file) durable.

    ``best_effort``: ignore a directory that cannot be opened or synced (some
    platforms and file systems refuse), for callers whose result is complete
    already and whose only loss would be that durability.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        if not best_effort:
            raise


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks (files may be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            h.update(block)
    return h.hexdigest()
