"""The model cache: where an exported model lives and how a folder gets there.

Layout: ``<model_cache_dir>/<name>-<weights_sha256[:12]>/`` holding
``model.onnx``, ``preprocess.json`` and ``meta.json`` (what the export
records about itself: name, dim, weights hash, head dims, format...). The
float32 export and its int8 model use the same layout under different names.

A folder is built under a temporary name and renamed into place
(:func:`build_into_cache`), so a reader either sees a complete model or none;
a killed build leaves only a ``.tmp-`` folder that a later build sweeps away.
Nothing here imports torch: serving machines look models up without it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from shoplens.errors import ModelUnavailable
from shoplens.files.atomic import fsync_dir

MODEL_FILE = "model.onnx"
PREPROCESS_FILE = "preprocess.json"
META_FILE = "meta.json"
# Bump when the export changes what a cached model computes; older folders
# are then exported again instead of being trusted.
EXPORT_FORMAT = 1
# A temp folder older than this belongs to a build that was killed.
_STALE_TMP_S = 3600.0

T = TypeVar("T")


def safe_name(name: str) -> str:
    """A model name as a portable folder name (``open_clip:ViT-B-32`` -> ``open_clip_ViT-B-32``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def model_dir_for(cache_dir: Path, name: str, weights_sha256: str) -> Path:
    """The folder of model ``name`` made from weights hashing to ``weights_sha256``."""
    return Path(cache_dir) / f"{safe_name(name)}-{weights_sha256[:12]}"


def read_meta(model_dir: Path) -> dict[str, Any]:
    """The folder's ``meta.json``; :class:`ModelUnavailable` when absent or broken."""
    try:
        meta = json.loads((model_dir / META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailable(f"no usable exported model in {model_dir}: {exc}") from None
    if not isinstance(meta, dict):
        raise ModelUnavailable(f"{model_dir / META_FILE} is not a JSON object")
    return meta


def write_json(path: Path, value: Any) -> None:
    """Write ``value`` as stable, fsynced JSON (the folder is renamed into place next)."""
    with path.open("w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished export of the current format."""
    if not all((model_dir / f).is_file() for f in (MODEL_FILE, PREPROCESS_FILE, META_FILE)):
        return False
    try:
        return read_meta(model_dir).get("export_format") == EXPORT_FORMAT
    except ModelUnavailable:
        return False


def newest_export(name: str, cache_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The most recently made complete folder of model ``name``, whatever its weights.

    A serving machine may hold exports but not the weights that name them.
    """
    found = []
    for meta_file in Path(cache_dir).glob(f"{safe_name(name)}-*/{META_FILE}"):
        folder = meta_file.parent
        if not is_complete(folder):
            continue
        try:
            meta = read_meta(folder)
        except ModelUnavailable:
            continue
        if meta.get("name") == name:
            found.append((str(meta.get("created", "")), folder, meta))
    if not found:
        return None
    _, folder, meta = sorted(found, key=lambda item: item[0])[-1]
    return folder, meta


def build_into_cache(
    target: Path,
    build: Callable[[Path], T],
    *,
    is_current: Callable[[Path], bool] = is_complete,
) -> T | None:
    """Make ``target`` with ``build(tmp)`` unless it is current; None when it already was.

    ``build`` fills a fresh temporary folder beside ``target``, which is renamed
    into place once ``build`` returns; a stale ``target`` (not ``is_current``)
    is replaced. Processes starting together on a fresh machine (indexer,
    service, test workers) queue on a lock per folder, and all but the first
    find the model made.
    """
    if is_current(target):
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        if is_current(target):
            return None
        _sweep_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every user
        try:
            result = build(tmp)
            _publish(tmp, target, is_current)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return result


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """An advisory lock per model folder (a no-op where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:  # Windows: the rename in _publish still keeps readers safe
        yield
        return
    with (target.parent / f".{target.name}.lock").open("a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _publish(tmp: Path, target: Path, is_current: Callable[[Path], bool]) -> None:
    """Rename the finished folder into place; another process may have won."""
    with (tmp / MODEL_FILE).open("rb") as fh:
        os.fsync(fh.fileno())
    if target.exists() and not is_current(target):
        # Made by an older format or from older weights: move it aside, then drop it.
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        with contextlib.suppress(FileNotFoundError):
            os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not is_current(target):  # not a lost race: a real failure
            raise
    fsync_dir(target.parent, best_effort=True)


def _sweep_stale(target: Path) -> None:
    """Remove temp folders of builds that were killed long ago."""
    now = time.time()
    leftovers = [
        *target.parent.glob(f".{target.name}.tmp-*"),
        *target.parent.glob(f".{target.name}.old-*"),
    ]
    for leftover in leftovers:
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
