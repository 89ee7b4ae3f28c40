"""Export a torch embedder to ONNX once, into the shared model cache.

The folder's layout, naming and atomic placement are :mod:`shoplens.models.cache`'s;
this module makes its contents: the ONNX graph, the preprocessing beside it,
and ``meta.json`` (including ``head_dims``, so serving never has to know
which family a model belongs to). Every export is checked against torch
before it is published.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoplens.errors import ModelUnavailable
from shoplens.models.cache import (
    EXPORT_FORMAT,
    META_FILE,
    MODEL_FILE,
    PREPROCESS_FILE,
    build_into_cache,
    model_dir_for,
    write_json,
)
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.progress import quiet_libraries, step

if TYPE_CHECKING:  # torch is the 'export' extra: cache look-ups must work without it
    from shoplens.models.torch_embedder import TorchEmbedder

log = logging.getLogger(__name__)

OPSET = 18
INPUT_NAME = "pixels"
OUTPUT_NAME = "embedding"


def export_to_cache(embedder: TorchEmbedder, cache_dir: Path, *, bar: bool = True) -> Path:
    """The cached export of ``embedder``: reused when present, else made now.

    ``bar``: show a slow step as a bar on a terminal (else only log lines).
    """
    target = model_dir_for(cache_dir, embedder.name, embedder.weights_sha256)
    cosine = build_into_cache(target, lambda tmp: _export(embedder, tmp, bar))
    if cosine is not None:
        log.info("exported %s to %s (torch vs ORT cosine %.6f)", embedder.name, target, cosine)
    return target


def _export(embedder: TorchEmbedder, out: Path, bar: bool) -> float:
    """Fill ``out`` with the verified export; returns the torch vs ORT cosine."""
    started = time.perf_counter()
    with step(f"exporting {embedder.name} to ONNX (once per machine)", bar=bar):
        _write_export(embedder, out)
    with step(f"checking the ONNX export of {embedder.name} against torch", bar=bar):
        cosine = _verify(embedder, out)
    write_json(out / META_FILE, _meta(embedder, cosine, time.perf_counter() - started))
    return cosine


def _write_export(embedder: TorchEmbedder, out: Path) -> None:
    import torch

    size = embedder.preprocess_config.crop
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter prints progress on stdout and logs every rewrite; keep command
    # output clean. (This swaps sys.stdout process-wide, acceptable for a
    # once-per-machine step.)
    with contextlib.redirect_stdout(io.StringIO()), quiet_libraries("onnx_ir", "onnxscript"):
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
    _strip_debug_info(out / MODEL_FILE)
    write_json(out / PREPROCESS_FILE, embedder.preprocess_config.to_dict())
    # Meta is needed to open the folder with OnnxEmbedder during verification.
    write_json(out / META_FILE, _meta(embedder, None, None))


def _strip_debug_info(path: Path) -> None:
    """Drop the exporter's debug metadata from the graph (per node: the Python stack
    trace with this checkout's paths, the FX node text, name scopes).

    It does not change what the graph computes, but it made two exports of the
    same weights from two checkouts differ byte for byte, carried build paths
    into the packaged model and took 3% of its size.
    """
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    del graph.metadata_props[:]
    for item in (*graph.node, *graph.value_info, *graph.input, *graph.output, *graph.initializer):
        del item.metadata_props[:]
    onnx.save(model, str(path))


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
        "head_dims": embedder.head_dims,
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
