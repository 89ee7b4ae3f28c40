"""Named models: what exists, where its export is cached, how to load it.

The serving path calls :func:`load_embedder` and gets an ONNX Runtime model;
torch is imported only when a model has to be exported first (once per
machine) or when a caller asks for the eager model explicitly. Nothing here
holds state: callers keep the embedder they load.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models.base import ImageEmbedder, TextEmbedder
from shoplens.models.cache import is_complete, model_dir_for, newest_export
from shoplens.models.effnet import EFFNET_SPECS, member_specs, weights_path
from shoplens.models.hashing import file_sha256
from shoplens.models.onnx_embedder import OnnxEmbedder

if TYPE_CHECKING:
    from shoplens.models.torch_embedder import TorchEmbedder

DEFAULT_MODEL = "effnet-lite0-lite1-ml-int8"
OPENCLIP_PREFIX = "open_clip:"
# "<effnet name>-int8": the float32 export quantized by shoplens.models.quantize.
INT8_SUFFIX = "-int8"

_EXPORT_HINT = (
    "install the 'export' extra: pip install 'shoplens[export]' "
    "or run `shoplens models export` where torch is available"
)


@dataclass(frozen=True)
class ModelInfo:
    name: str
    dim: int | None  # None: not known without loading (an OpenCLIP arch never exported)
    input_size: int | None
    family: str  # "effnet" or "open_clip"
    supports_text: bool
    description: str


def is_openclip(name: str) -> bool:
    return name.startswith(OPENCLIP_PREFIX)


def is_int8(name: str) -> bool:
    """``effnet-lite0-int8`` and the like: ONNX-only int8 variants of a built-in model."""
    return name.endswith(INT8_SUFFIX) and name.removesuffix(INT8_SUFFIX) in EFFNET_SPECS


def supports_text(name: str) -> bool:
    """Whether model ``name`` embeds text into its image space (GET /v1/search?q=)."""
    return is_openclip(name)


def available_models(settings: Settings | None = None) -> list[ModelInfo]:
    """Every built-in model, plus the configured OpenCLIP one when there is one."""
    infos = [
        ModelInfo(
            name=spec.name,
            dim=spec.dim,
            input_size=spec.input_size,
            family="effnet",
            supports_text=False,
            description=spec.description,
        )
        for spec in EFFNET_SPECS.values()
    ]
    infos += [
        ModelInfo(
            name=spec.name + INT8_SUFFIX,
            dim=spec.dim,
            input_size=spec.input_size,
            family="effnet",
            supports_text=False,
            description=f"{spec.name} quantized to int8 (faster on CPU, ONNX Runtime only)",
        )
        for spec in EFFNET_SPECS.values()
    ]
    if settings is not None and is_openclip(settings.model):
        newest = newest_export(settings.model, settings.model_cache_dir)
        meta = newest[1] if newest else None
        infos.append(
            ModelInfo(
                name=settings.model,
                dim=int(meta["dim"]) if meta else None,
                input_size=int(meta["input_size"]) if meta else None,
                family="open_clip",
                supports_text=True,
                description=f"OpenCLIP checkpoint {settings.openclip_checkpoint or '(not set)'}",
            )
        )
    return infos


def weights_sha256(name: str, settings: Settings) -> str:
    """The hash naming the export of ``name``; ModelUnavailable if weights are absent."""
    if is_int8(name):
        name = name.removesuffix(INT8_SUFFIX)
    if name in EFFNET_SPECS:
        shas = [
            file_sha256(weights_path(spec), settings.model_cache_dir)
            for spec in member_specs(EFFNET_SPECS[name])
        ]
        if len(shas) == 1:
            return shas[0]
        # An ensemble's export depends on every member's weights: hash them together.
        return hashlib.sha256("\n".join(shas).encode()).hexdigest()
    if is_openclip(name):
        from shoplens.models.openclip import checkpoint_path

        return file_sha256(checkpoint_path(settings), settings.model_cache_dir)
    raise _unknown(name)


def cached_model_dir(name: str, settings: Settings) -> Path | None:
    """The finished export ``name`` would load, or None when it must be exported.

    With the weights on this machine the folder must match their hash. On a
    serving machine without them (no export extra, checkpoint elsewhere) the
    newest finished export of that name in the cache is used.
    """
    _check_known(name)
    if is_int8(name):
        return _cached_int8_dir(name, settings)
    try:
        sha = weights_sha256(name, settings)
    except ModelUnavailable:
        newest = _newest_export_dir(name, settings.model_cache_dir)
        return newest
    target = model_dir_for(settings.model_cache_dir, name, sha)
    return target if is_complete(target) else None


def export_model(name: str, settings: Settings) -> Path:
    """The export folder of ``name``, exporting it now (needs torch) if not cached."""
    _check_known(name)
    cached = cached_model_dir(name, settings)
    if cached is not None:
        return cached
    if is_int8(name):
        from shoplens.models.quantize import quantize_export

        fp32_dir = export_model(name.removesuffix(INT8_SUFFIX), settings)
        return quantize_export(fp32_dir, settings.model_cache_dir)
    from shoplens.models.export import export_to_cache

    embedder = load_torch_embedder(name, settings)
    return export_to_cache(embedder, settings.model_cache_dir)


def load_embedder(settings: Settings) -> ImageEmbedder:
    """The configured model on ONNX Runtime, exported first if this machine lacks it."""
    model_dir = export_model(settings.model, settings)
    return OnnxEmbedder(model_dir, threads=settings.ort_threads)


def load_torch_embedder(name: str, settings: Settings) -> TorchEmbedder:
    """The eager torch model behind the same protocol (tests, benchmarks, export)."""
    _check_known(name)
    if is_int8(name):
        raise ModelUnavailable(
            f"{name} runs on ONNX Runtime only; its eager float32 model is "
            f"{name.removesuffix(INT8_SUFFIX)}"
        )
    _require("torch", "onnx", "onnxscript", *(["timm"] if name in EFFNET_SPECS else []))
    sha = weights_sha256(name, settings)
    if name in EFFNET_SPECS:
        from shoplens.models.effnet import load_effnet

        return load_effnet(name, sha)
    _require("open_clip")
    from shoplens.models.openclip import load_openclip_image

    return load_openclip_image(name, settings, sha)


def load_text_embedder(settings: Settings) -> TextEmbedder | None:
    """The text tower of the configured model; None when the model has none.

    Raises :class:`ModelUnavailable` when the model should embed text but
    cannot here (OpenCLIP without torch/open_clip installed, checkpoint gone).
    """
    if not supports_text(settings.model):
        return None
    _require(
        "torch", "open_clip", hint="install the 'openclip' extra: pip install 'shoplens[openclip]'"
    )
    from shoplens.models.openclip import load_openclip_text

    return load_openclip_text(settings.model, settings)


def _cached_int8_dir(name: str, settings: Settings) -> Path | None:
    from shoplens.models.quantize import int8_dir_for, is_complete_int8

    base = name.removesuffix(INT8_SUFFIX)
    fp32_dir = cached_model_dir(base, settings)
    if fp32_dir is None:
        try:
            weights_sha256(base, settings)
        except ModelUnavailable:
            # A serving cache may hold only int8 folders, without the weights.
            return _newest_export_dir(name, settings.model_cache_dir)
        return None  # float32 must be exported first, then quantized
    target = int8_dir_for(fp32_dir, settings.model_cache_dir)
    return target if is_complete_int8(target, fp32_dir) else None


def _check_known(name: str) -> None:
    if name not in EFFNET_SPECS and not is_openclip(name) and not is_int8(name):
        raise _unknown(name)


def _unknown(name: str) -> ModelUnavailable:
    known = ", ".join([*EFFNET_SPECS, *(n + INT8_SUFFIX for n in EFFNET_SPECS)])
    known += f", {OPENCLIP_PREFIX}<arch>"
    return ModelUnavailable(f"unknown model {name!r}; choose one of {known}")


def _require(*modules: str, hint: str = _EXPORT_HINT) -> None:
    missing = [m for m in modules if not _installed(m)]
    if missing:
        raise ModelUnavailable(
            f"loading this model needs {', '.join(missing)}, which is not installed: {hint}"
        )


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked install
        return False


def _newest_export_dir(name: str, cache_dir: Path) -> Path | None:
    newest = newest_export(name, cache_dir)
    return newest[0] if newest else None
