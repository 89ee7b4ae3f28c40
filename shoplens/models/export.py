"""Export a torch embedder to ONNX once, into the shared model cache.

Layout: ``<model_cache_dir>/<name>-<weights_sha256[:12]>/`` holding
``model.onnx``, ``preprocess.json`` and ``meta.json``. The folder is built
under a temporary name and renamed into place, so a reader either sees a
complete export or none; a killed export leaves only a ``.tmp`` folder that
the next export sweeps away.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoplens.errors import ModelUnavailable
from shoplens.files.atomic import fsync_dir
from shoplens.models.onnx_embedder import (
    META_FILE,
    MODEL_FILE,
    PREPROCESS_FILE,
    OnnxEmbedder,
    read_meta,
)

if TYPE_CHECKING:  # torch is the 'export' extra: cache look-ups must work without it
    from shoplens.models.torch_embedder import TorchEmbedder

log = logging.getLogger(__name__)

OPSET = 18
# Bump when the export changes what a cached model computes; older folders
# are then exported again instead of being trusted.
EXPORT_FORMAT = 1
INPUT_NAME = "pixels"
OUTPUT_NAME = "embedding"
# A temp folder older than this belongs to an export that was killed.
_STALE_TMP_S = 3600.0


def safe_name(name: str) -> str:
    """A model name as a portable folder name (``open_clip:ViT-B-32`` -> ``open_clip_ViT-B-32``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def model_dir_for(cache_dir: Path, name: str, weights_sha256: str) -> Path:
    return Path(cache_dir) / f"{safe_name(name)}-{weights_sha256[:12]}"


def is_complete(model_dir: Path) -> bool:
    """True when ``model_dir`` holds a finished export of the current format."""
    if not all((model_dir / f).is_file() for f in (MODEL_FILE, PREPROCESS_FILE, META_FILE)):
        return False
    try:
        return read_meta(model_dir).get("export_format") == EXPORT_FORMAT
    except ModelUnavailable:
        return False


def export_to_cache(embedder: TorchEmbedder, cache_dir: Path) -> Path:
    """The cached export of ``embedder``: reused when present, else made now."""
    target = model_dir_for(cache_dir, embedder.name, embedder.weights_sha256)
    if is_complete(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Processes starting together on a fresh machine (indexer, service, test
    # workers) queue here, and all but the first find the export done.
    with _export_lock(target):
        if is_complete(target):
            return target
        _sweep_stale(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is shared by every user
        try:
            started = time.perf_counter()
            _write_export(embedder, tmp)
            cosine = _verify(embedder, tmp)
            meta = _meta(embedder, cosine, time.perf_counter() - started)
            _write_json(tmp / META_FILE, meta)
            _publish(tmp, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (torch vs ORT cosine %.6f)", embedder.name, target, cosine)
    return target


@contextlib.contextmanager
def _export_lock(target: Path) -> Iterator[None]:
    """An advisory lock per export folder (a no-op where fcntl does not exist)."""
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


def _write_export(embedder: TorchEmbedder, out: Path) -> None:
    import torch

    size = embedder.preprocess_config.crop
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter prints progress on stdout; keep command output clean. (This
    # swaps sys.stdout process-wide, acceptable for a once-per-machine step.)
    with contextlib.redirect_stdout(io.StringIO()):
        torch.onnx.export(
            embedder.module,
            (example,),
            str(out / MODEL_FILE),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,
        )
    _write_json(out / PREPROCESS_FILE, embedder.preprocess_config.to_dict())
    # Meta is needed to open the folder with OnnxEmbedder during verification.
    _write_json(out / META_FILE, _meta(embedder, None, None))


def _verify(embedder: TorchEmbedder, out: Path) -> float:
    """Run torch and ORT on the same random batch; refuse an export that drifts."""
    size = embedder.preprocess_config.crop
    batch = np.random.default_rng(0).standard_normal((3, 3, size, size)).astype(np.float32)
    expected = embedder.embed_prepared(batch)
    got = OnnxEmbedder(out, threads=0).embed_prepared(batch)
    cosine = float(np.min(np.sum(expected * got, axis=1)))
    if not cosine > 0.999:
        raise ModelUnavailable(
            f"the ONNX export of {embedder.name} disagrees with torch (cosine {cosine:.4f})"
        )
    return cosine


def _meta(embedder: TorchEmbedder, cosine: float | None, seconds: float | None) -> dict[str, Any]:
    import torch

    return {
        "name": embedder.name,
        "dim": embedder.dim,
        "input_size": embedder.preprocess_config.crop,
        "weights_sha256": embedder.weights_sha256,
        "opset": OPSET,
        "export_format": EXPORT_FORMAT,
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "normalised": True,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "verify_cosine": cosine,
        "export_seconds": None if seconds is None else round(seconds, 2),
    }


def _write_json(path: Path, value: Any) -> None:
    with path.open("w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=2, sort_keys=True)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def _publish(tmp: Path, target: Path) -> None:
    """Rename the finished folder into place; another process may have won."""
    for name in (MODEL_FILE,):
        with (tmp / name).open("rb") as fh:
            os.fsync(fh.fileno())
    if target.exists() and not is_complete(target):
        # An export of an older format: move it aside, then drop it.
        old = target.with_name(f".{target.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(target, old)
        shutil.rmtree(old, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not is_complete(target):  # not a lost race: a real failure
            raise
    fsync_dir(target.parent, best_effort=True)


def _sweep_stale(target: Path) -> None:
    """Remove temp folders of exports that were killed long ago."""
    now = time.time()
    leftovers = [
        *target.parent.glob(f".{target.name}.tmp-*"),
        *target.parent.glob(f".{target.name}.old-*"),
    ]
    for leftover in leftovers:
        with contextlib.suppress(OSError):
            if now - leftover.stat().st_mtime > _STALE_TMP_S:
                shutil.rmtree(leftover, ignore_errors=True)
