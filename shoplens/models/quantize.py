"""int8 models: static post-training quantization of an exported model.

``effnet-lite0-int8`` is ``effnet-lite0`` with int8 weights and activations
(ONNX QDQ format, per-channel weights, activation ranges calibrated on
catalog photos). EfficientNet-Lite was designed for int8 (ReLU6, no
squeeze-excite), and ONNX Runtime runs the quantized convolutions with
VNNI/AVX2 integer kernels: several times faster than float32 on a small CPU,
vectors within cosine ~0.99 of the float model.

Dynamic quantization is not used: for a convolutional network it quantizes
activations per call (ConvInteger), which is slower than float32 on CPU and
loses more quality.

The quantized folder sits beside its float32 export in the model cache,
``<model_cache_dir>/<name>-int8-<weights_sha256[:12]>/``, with the same
files (``model.onnx``, ``preprocess.json``, ``meta.json``), so
:class:`~shoplens.models.onnx_embedder.OnnxEmbedder` opens either. It is
built and placed by :func:`shoplens.models.cache.build_into_cache`, like
every export. This module owns the int8 naming (``<name>-int8``).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from shoplens.errors import ModelUnavailable
from shoplens.models.base import FloatArray
from shoplens.models.cache import (
    META_FILE,
    MODEL_FILE,
    PREPROCESS_FILE,
    build_into_cache,
    is_complete,
    model_dir_for,
    read_meta,
    write_json,
)
from shoplens.models.decode import decode_image
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.progress import quiet_libraries, step

log = logging.getLogger(__name__)

INT8_SUFFIX = "-int8"
# Bump when the quantization recipe changes what a cached int8 model computes.
QUANT_FORMAT = 1
# Calibration feeds the network this many photos per call (faster than one by one).
_CALIBRATION_BATCH = 8
# A quantized model further than this from its float32 model is refused.
_MIN_COSINE = 0.95

DEMO_IMAGES = Path(__file__).resolve().parents[1] / "demo" / "images"


def is_int8(name: str) -> bool:
    return name.endswith(INT8_SUFFIX)


def base_name(name: str) -> str:
    """``effnet-lite0-int8`` -> ``effnet-lite0``; other names unchanged."""
    return name[: -len(INT8_SUFFIX)] if is_int8(name) else name


def int8_name(name: str) -> str:
    return name if is_int8(name) else name + INT8_SUFFIX


def calibration_photos(folder: Path = DEMO_IMAGES) -> list[Path]:
    """The default calibration set: the demo catalog's product photos (one per product).

    They ship inside the package, so an int8 export is reproducible offline.
    """
    photos = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        raise ModelUnavailable(f"no calibration photos (*.jpg) in {folder}")
    return photos


def int8_dir_for(fp32_dir: Path, cache_dir: Path) -> Path:
    """Where the int8 model of the float32 export in ``fp32_dir`` is cached."""
    meta = read_meta(fp32_dir)
    return model_dir_for(cache_dir, int8_name(str(meta["name"])), str(meta["weights_sha256"]))


def is_complete_int8(model_dir: Path, fp32_dir: Path | None = None) -> bool:
    """A finished int8 folder of the current recipe (made from ``fp32_dir``'s export, if given).

    A float32 model exported again (say with another pooling) has a new
    ``created`` stamp, so an int8 model quantized from the old one is stale.
    """
    if not is_complete(model_dir):
        return False
    try:
        meta = read_meta(model_dir)
        if meta.get("quant_format") != QUANT_FORMAT:
            return False
        return fp32_dir is None or meta.get("float32_created") == read_meta(fp32_dir).get("created")
    except ModelUnavailable:
        return False


def quantize_export(
    fp32_dir: Path,
    cache_dir: Path,
    *,
    photos: Sequence[Path] | None = None,
    bar: bool = True,
) -> Path:
    """The cached int8 model of the float32 export in ``fp32_dir``, quantized now if absent.

    ``photos`` are the calibration set (default :func:`calibration_photos`):
    catalog-like photos whose activation ranges fix the int8 scales.
    Raises :class:`ModelUnavailable` if the result drifts from float32
    (mean cosine below 0.95 on the calibration photos).
    """
    fp32_dir = Path(fp32_dir)
    target = int8_dir_for(fp32_dir, cache_dir)
    cosine = build_into_cache(
        target,
        lambda tmp: _quantize_into(fp32_dir, tmp, photos or calibration_photos(), bar),
        is_current=lambda folder: is_complete_int8(folder, fp32_dir),
    )
    if cosine is not None:
        log.info("quantized %s to int8 in %s (cosine to float32 %.4f)", fp32_dir, target, cosine)
    return target


def _quantize_into(fp32_dir: Path, out: Path, photos: Sequence[Path], bar: bool) -> float:
    """Fill ``out`` with the verified int8 model; returns its mean cosine to float32."""
    started = time.perf_counter()
    fp32 = OnnxEmbedder(fp32_dir, threads=0)
    what = f"quantizing {fp32.name} to int8, calibrated on {len(photos)} photos"
    with step(what, total=len(photos), unit="photos", bar=bar) as shown:
        inputs = _calibration_inputs(fp32, photos)
        _quantize(fp32_dir / MODEL_FILE, out / MODEL_FILE, fp32.meta, inputs, shown.advance)
    shutil.copyfile(fp32_dir / PREPROCESS_FILE, out / PREPROCESS_FILE)
    write_json(out / META_FILE, _meta(fp32, len(inputs), None, None))  # OnnxEmbedder needs it
    with step(f"checking the int8 model of {fp32.name} against float32", bar=bar):
        cosine = _verify(fp32, out, inputs)
    write_json(out / META_FILE, _meta(fp32, len(inputs), cosine, started))
    return cosine


def _calibration_inputs(fp32: OnnxEmbedder, photos: Sequence[Path]) -> FloatArray:
    draft = fp32.preprocess_config.resize
    images: list[Image.Image] = [decode_image(p.read_bytes(), draft_size=draft) for p in photos]
    return np.stack([fp32.prepare(im) for im in images]).astype(np.float32, copy=False)


def _quantize(
    src: Path,
    dst: Path,
    meta: dict[str, Any],
    inputs: FloatArray,
    calibrated: Callable[[int], None],
) -> None:
    """Static QDQ quantization; ``calibrated(n)`` after each calibration batch."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    input_name = str(meta.get("input", "pixels"))

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self._batches: Iterator[FloatArray] = iter(
                inputs[i : i + _CALIBRATION_BATCH]
                for i in range(0, len(inputs), _CALIBRATION_BATCH)
            )

        def get_next(self) -> dict[str, FloatArray] | None:
            batch = next(self._batches, None)
            if batch is None:
                return None
            calibrated(len(batch))
            return {input_name: batch}

    prepared = dst.with_name("prepared.onnx")
    # The quantizer logs a line per rescaled weight, on the root logger itself.
    with quiet_libraries(""):
        try:
            # Folds constants and fuses BatchNorm first, so the quantizer sees the graph
            # ORT runs. (Symbolic shape inference is skipped: it fails on the exporter's
            # Expand nodes.)
            quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
            quantize_static(
                str(prepared),
                str(dst),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
            )
        finally:
            prepared.unlink(missing_ok=True)


def _verify(fp32: OnnxEmbedder, folder: Path, inputs: FloatArray) -> float:
    """Mean cosine between float32 and int8 vectors of the calibration photos."""
    int8 = OnnxEmbedder(folder, threads=0)
    expected = fp32.embed_prepared(inputs)
    got = int8.embed_prepared(inputs)
    cosine = float(np.mean(np.sum(expected * got, axis=1)))
    if not cosine > _MIN_COSINE:
        raise ModelUnavailable(
            f"the int8 model of {fp32.name} disagrees with float32 (mean cosine {cosine:.4f})"
        )
    return cosine


def _meta(
    fp32: OnnxEmbedder, photos: int, cosine: float | None, started: float | None
) -> dict[str, Any]:
    meta = dict(fp32.meta)
    meta.update(
        name=int8_name(fp32.name),
        # Written even when the float32 folder predates it (derived at its load).
        head_dims=fp32.head_dims,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        quant_format=QUANT_FORMAT,
        quantization={
            "method": "static",
            "format": "QDQ",
            "weights": "int8 per-channel",
            "activations": "uint8 per-tensor",
            "calibration": "minmax",
            "calibration_photos": photos,
            "cosine_to_float32": None if cosine is None else round(cosine, 6),
        },
        float32_name=fp32.name,
        float32_created=fp32.meta.get("created"),
        quantize_seconds=None if started is None else round(time.perf_counter() - started, 2),
    )
    return meta
