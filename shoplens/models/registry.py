"""Named models: a table of model families, and the functions that walk it.

Each :class:`ModelFamily` says which names are its, what it lists, how its
weights are hashed and how its eager (torch) model is built; finding and
making its export in the cache is the same for every family. The int8
variant of a family (:class:`Int8Variant`, ``<name>-int8``) is defined once,
over any family, and differs only in how its folder is found and made (by
quantizing the float32 export).

The serving path calls :func:`load_embedder` and gets an ONNX Runtime model:
the model cache's export, else the one shipped in the package
(:mod:`shoplens.models.packaged`, the default model); torch is imported only
when a model has to be exported first (once per machine) or when a caller
asks for the eager model explicitly. Nothing here
holds state: callers keep the embedder they load.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models import openclip
from shoplens.models.base import ImageEmbedder, TextEmbedder
from shoplens.models.cache import is_complete, model_dir_for, newest_export, read_meta
from shoplens.models.effnet import EFFNET_SPECS, member_specs, weights_path
from shoplens.models.hashing import file_sha256
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.packaged import packaged_dir
from shoplens.models.progress import step
from shoplens.models.quantize import (
    base_name,
    int8_dir_for,
    int8_name,
    is_complete_int8,
    is_int8,
    quantize_export,
)

if TYPE_CHECKING:
    from shoplens.models.torch_embedder import TorchEmbedder

DEFAULT_MODEL = "effnet-lite0-lite1-ml-int8"

_EXPORT_HINT = (
    "install the 'export' extra: pip install 'shoplens[export]' "
    "or run `shoplens models export` where torch is available"
)
_EXPORT_MODULES = ("torch", "onnx", "onnxscript")


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``shoplens models list``."""

    name: str
    dim: int | None  # None: not known without loading (an OpenCLIP arch never exported)
    input_size: int | None
    family: str  # "effnet" or "open_clip"
    supports_text: bool
    description: str


@dataclass(frozen=True)
class ModelFamily:
    """Float32 models exported from torch: one row of the table."""

    owns: Callable[[str], bool]
    known: tuple[str, ...]  # how its names look, for the unknown-model message
    listing: Callable[[Settings | None], list[ModelInfo]]
    hash_weights: Callable[[str, Settings], str]  # ModelUnavailable when absent
    needs: tuple[str, ...]  # modules checked before building the eager model
    build: Callable[[str, Settings, str], TorchEmbedder]  # (name, settings, weights sha)
    load_text: Callable[[str, Settings], TextEmbedder] | None = None

    def cached_dir(self, name: str, settings: Settings) -> Path | None:
        """With the weights here the folder must match their hash; on a serving
        machine without them, the newest finished export of that name is used."""
        try:
            sha = self.hash_weights(name, settings)
        except ModelUnavailable:
            return _newest_dir(name, settings)
        target = model_dir_for(settings.model_cache_dir, name, sha)
        return target if is_complete(target) else None

    def make(self, name: str, settings: Settings, *, bar: bool = True) -> Path:
        """Export ``name`` now (torch): :meth:`cached_dir` found nothing."""
        from shoplens.models.export import export_to_cache

        # Importing torch and building the network alone take 10-20 s on a small CPU.
        with step(f"loading {name} into torch to export it", bar=bar):
            eager = self.load_torch(name, settings)
        return export_to_cache(eager, settings.model_cache_dir, bar=bar)

    def load_torch(self, name: str, settings: Settings) -> TorchEmbedder:
        _require(*self.needs)
        return self.build(name, settings, self.hash_weights(name, settings))


@dataclass(frozen=True)
class Int8Variant:
    """``<name>-int8`` for each model of ``base``: its float32 export quantized
    by :mod:`shoplens.models.quantize` (ONNX Runtime only, no text tower)."""

    base: ModelFamily
    load_text: ClassVar[None] = None

    @property
    def known(self) -> tuple[str, ...]:
        return tuple(int8_name(n) for n in self.base.known)

    def owns(self, name: str) -> bool:
        return is_int8(name) and self.base.owns(base_name(name))

    def listing(self, settings: Settings | None) -> list[ModelInfo]:
        return [
            replace(
                info,
                name=int8_name(info.name),
                supports_text=False,
                description=f"{info.name} quantized to int8 (faster on CPU, ONNX Runtime only)",
            )
            for info in self.base.listing(settings)
        ]

    def hash_weights(self, name: str, settings: Settings) -> str:
        return self.base.hash_weights(base_name(name), settings)

    def cached_dir(self, name: str, settings: Settings) -> Path | None:
        fp32_dir = self.base.cached_dir(base_name(name), settings)
        if fp32_dir is None:
            try:
                self.hash_weights(name, settings)
            except ModelUnavailable:
                # A serving cache may hold only int8 folders, without the weights.
                return _newest_dir(name, settings)
            return None  # float32 must be exported first, then quantized
        target = int8_dir_for(fp32_dir, settings.model_cache_dir)
        return target if is_complete_int8(target, fp32_dir) else None

    def make(self, name: str, settings: Settings, *, bar: bool = True) -> Path:
        fp32_dir = export_model(base_name(name), settings, bar=bar)
        return quantize_export(fp32_dir, settings.model_cache_dir, bar=bar)

    def load_torch(self, name: str, settings: Settings) -> TorchEmbedder:
        raise ModelUnavailable(
            f"{name} runs on ONNX Runtime only; its eager float32 model is {base_name(name)}"
        )


def _effnet_listing(settings: Settings | None) -> list[ModelInfo]:
    return [
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


def _effnet_sha(name: str, settings: Settings) -> str:
    shas = [
        file_sha256(weights_path(spec), settings.model_cache_dir)
        for spec in member_specs(EFFNET_SPECS[name])
    ]
    if len(shas) == 1:
        return shas[0]
    # An ensemble's export depends on every member's weights: hash them together.
    return hashlib.sha256("\n".join(shas).encode()).hexdigest()


def _effnet_build(name: str, settings: Settings, sha: str) -> TorchEmbedder:
    from shoplens.models.effnet import load_effnet

    return load_effnet(name, sha)


def _openclip_listing(settings: Settings | None) -> list[ModelInfo]:
    """The configured OpenCLIP model, when there is one (its arch is open-ended)."""
    if settings is None or not _OPENCLIP.owns(settings.model):
        return []
    newest = newest_export(settings.model, settings.model_cache_dir)
    meta = newest[1] if newest else None
    return [
        ModelInfo(
            name=settings.model,
            dim=int(meta["dim"]) if meta else None,
            input_size=int(meta["input_size"]) if meta else None,
            family="open_clip",
            supports_text=True,
            description=f"OpenCLIP checkpoint {settings.openclip_checkpoint or '(not set)'}",
        )
    ]


def _openclip_sha(name: str, settings: Settings) -> str:
    return file_sha256(openclip.checkpoint_path(settings), settings.model_cache_dir)


def _openclip_build(name: str, settings: Settings, sha: str) -> TorchEmbedder:
    _require("open_clip")
    return openclip.load_openclip_image(name, settings, sha)


def _openclip_text(name: str, settings: Settings) -> TextEmbedder:
    _require(
        "torch", "open_clip", hint="install the 'openclip' extra: pip install 'shoplens[openclip]'"
    )
    return openclip.load_openclip_text(name, settings)


_EFFNET = ModelFamily(
    owns=lambda name: name in EFFNET_SPECS,
    known=tuple(EFFNET_SPECS),
    listing=_effnet_listing,
    hash_weights=_effnet_sha,
    needs=(*_EXPORT_MODULES, "timm"),
    build=_effnet_build,
)
_OPENCLIP = ModelFamily(
    owns=lambda name: name.startswith(openclip.PREFIX),
    known=(f"{openclip.PREFIX}<arch>",),
    listing=_openclip_listing,
    hash_weights=_openclip_sha,
    needs=_EXPORT_MODULES,
    build=_openclip_build,
    load_text=_openclip_text,
)
# First match wins; the order is also the order of available_models().
FAMILIES: tuple[ModelFamily | Int8Variant, ...] = (_EFFNET, Int8Variant(_EFFNET), _OPENCLIP)


def family_of(name: str) -> ModelFamily | Int8Variant:
    """The family owning model ``name``; ModelUnavailable naming the choices if none."""
    for family in FAMILIES:
        if family.owns(name):
            return family
    known = ", ".join(n for family in FAMILIES for n in family.known)
    raise ModelUnavailable(f"unknown model {name!r}; choose one of {known}")


def supports_text(name: str) -> bool:
    """Whether model ``name`` embeds text into its image space (GET /v1/search?q=)."""
    return any(f.owns(name) and f.load_text is not None for f in FAMILIES)


def available_models(settings: Settings | None = None) -> list[ModelInfo]:
    """Every built-in model, plus the configured OpenCLIP one when there is one."""
    return [info for family in FAMILIES for info in family.listing(settings)]


def weights_sha256(name: str, settings: Settings) -> str:
    """The hash naming the export of ``name``; ModelUnavailable if weights are absent."""
    return family_of(name).hash_weights(name, settings)


def cached_model_dir(name: str, settings: Settings) -> Path | None:
    """The finished export ``name`` would load, or None when it must be exported."""
    return family_of(name).cached_dir(name, settings)


def export_model(name: str, settings: Settings, *, bar: bool = True) -> Path:
    """The export folder of ``name`` in the model cache, exporting it now (needs
    torch) if not cached; ``bar`` shows the slow steps as bars on a terminal."""
    family = family_of(name)
    return family.cached_dir(name, settings) or family.make(name, settings, bar=bar)


def model_dir(name: str, settings: Settings) -> Path | None:
    """The folder :func:`load_embedder` opens for ``name`` without exporting: the
    cache's export, else the one shipped inside the package; None when neither."""
    family = family_of(name)
    return family.cached_dir(name, settings) or _packaged(family, name, settings)


def load_embedder(settings: Settings, *, progress: bool = True) -> ImageEmbedder:
    """The configured model on ONNX Runtime.

    From the model cache, else from the package (the default model ships in it,
    so a plain ``pip install`` serves it without torch), else exported now
    (needs the 'export' extra; ``progress`` shows its steps as bars on a terminal).
    """
    name = settings.model
    folder = model_dir(name, settings) or family_of(name).make(name, settings, bar=progress)
    return OnnxEmbedder(folder, threads=settings.ort_threads)


def load_torch_embedder(name: str, settings: Settings) -> TorchEmbedder:
    """The eager torch model behind the same protocol (tests, benchmarks, export)."""
    return family_of(name).load_torch(name, settings)


def load_text_embedder(settings: Settings) -> TextEmbedder | None:
    """The text tower of the configured model; None when the model has none.

    Raises :class:`ModelUnavailable` when the model should embed text but
    cannot here (OpenCLIP without torch/open_clip installed, checkpoint gone).
    """
    for family in FAMILIES:
        if family.owns(settings.model):
            return None if family.load_text is None else family.load_text(settings.model, settings)
    return None


def _packaged(family: ModelFamily | Int8Variant, name: str, settings: Settings) -> Path | None:
    """The package's export of ``name`` when it fits this machine's weights.

    Without the weights packages (the serving install) it is the model. With
    them, their hash must be the one it was exported from: different weights
    are exported afresh rather than served the shipped vectors.
    """
    folder = packaged_dir(name)
    if folder is None:
        return None
    try:
        sha = family.hash_weights(name, settings)
    except ModelUnavailable:
        return folder
    return folder if read_meta(folder).get("weights_sha256") == sha else None


def _newest_dir(name: str, settings: Settings) -> Path | None:
    newest = newest_export(name, settings.model_cache_dir)
    return newest[0] if newest else None


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
