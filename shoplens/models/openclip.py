"""OpenCLIP models from a local checkpoint (optional extra ``openclip``).

Model names are ``open_clip:<arch>``. ``<arch>`` is one of open_clip's
built-in configs (``open_clip:ViT-B-32``) unless an ``open_clip_config.json``
lies beside the checkpoint -- the Hugging Face layout -- which then defines
the architecture and preprocessing. The network is always built with random
weights and the checkpoint loaded into it: nothing is ever downloaded.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models.base import FloatArray, PreprocessConfig, l2_normalise

if TYPE_CHECKING:
    import torch

    from shoplens.models.torch_embedder import TorchEmbedder

PREFIX = "open_clip:"
HF_CONFIG = "open_clip_config.json"
_INTERPOLATIONS = {"bicubic", "bilinear", "lanczos", "nearest"}


def checkpoint_path(settings: Settings) -> Path:
    """The configured local checkpoint; ModelUnavailable when unset or missing."""
    path = settings.openclip_checkpoint
    if path is None:
        raise ModelUnavailable(
            f"model {settings.model!r} needs a local checkpoint: set "
            "SHOPLENS_OPENCLIP_CHECKPOINT to the weights file (nothing is downloaded)"
        )
    if not Path(path).is_file():
        raise ModelUnavailable(f"the OpenCLIP checkpoint {path} does not exist or is not a file")
    return Path(path)


def _open_clip() -> Any:
    # Some configs name Hugging Face tokenizers or text towers; offline mode
    # makes a missing one fail fast instead of reaching for the network.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    return open_clip


def _model_source(arch: str, checkpoint: Path) -> str:
    """What open_clip should build: the checkpoint's folder config, or a built-in."""
    open_clip = _open_clip()
    if (checkpoint.parent / HF_CONFIG).is_file():
        return f"local-dir:{checkpoint.parent}"
    if open_clip.get_model_config(arch) is None:
        raise ModelUnavailable(
            f"open_clip has no architecture {arch!r}; use one of open_clip.list_models() "
            f"or put its {HF_CONFIG} beside the checkpoint"
        )
    return arch


def build_openclip(name: str, settings: Settings) -> tuple[Any, str]:
    """The full CLIP model with the local checkpoint loaded, and its source id."""
    if not name.startswith(PREFIX):
        raise ModelUnavailable(f"{name!r} is not an OpenCLIP model name ({PREFIX}<arch>)")
    open_clip = _open_clip()
    checkpoint = checkpoint_path(settings)
    source = _model_source(name.removeprefix(PREFIX), checkpoint)
    try:
        model = open_clip.create_model(
            source,
            pretrained=None,
            load_weights=False,
            pretrained_image=False,
            pretrained_text=False,
        )
        open_clip.load_checkpoint(model, str(checkpoint), strict=True, weights_only=True)
    except ModelUnavailable:
        raise
    except Exception as exc:  # open_clip/torch raise many types for a bad file
        raise ModelUnavailable(
            f"cannot load the OpenCLIP checkpoint {checkpoint} as {source}: {exc}"
        ) from None
    return model.eval(), source


def preprocess_config_of(visual: Any) -> PreprocessConfig:
    """Our :class:`PreprocessConfig` from open_clip's ``visual.preprocess_cfg``."""
    cfg = dict(getattr(visual, "preprocess_cfg", {}) or {})
    size = cfg.get("size", getattr(visual, "image_size", 224))
    if isinstance(size, list | tuple):
        if len(set(size)) != 1:
            raise ModelUnavailable(f"non-square OpenCLIP inputs are not supported ({size})")
        size = size[0]
    mode = str(cfg.get("resize_mode", "shortest"))
    if mode not in ("shortest", "squash"):
        raise ModelUnavailable(f"OpenCLIP resize_mode {mode!r} is not supported")
    interpolation = str(cfg.get("interpolation", "bicubic"))
    return PreprocessConfig(
        resize=int(size),
        crop=int(size),
        interpolation=interpolation if interpolation in _INTERPOLATIONS else "bicubic",
        mean=tuple(float(v) for v in cfg.get("mean", (0.48145466, 0.4578275, 0.40821073))),  # type: ignore[arg-type]
        std=tuple(float(v) for v in cfg.get("std", (0.26862954, 0.26130258, 0.27577711))),  # type: ignore[arg-type]
        extra={"resize_mode": mode} if mode != "shortest" else {},
    )


def load_openclip_image(name: str, settings: Settings, weights_sha256: str) -> TorchEmbedder:
    """The image tower as a torch embedder (exported to ONNX like the default model)."""
    import torch

    from shoplens.models.torch_embedder import NormalisedFeatures, TorchEmbedder

    model, _ = build_openclip(name, settings)
    visual = model.visual
    cfg = preprocess_config_of(visual)
    with torch.inference_mode():
        dim = int(visual(torch.zeros(1, 3, cfg.crop, cfg.crop)).shape[-1])
    return TorchEmbedder(
        NormalisedFeatures(visual),
        name=name,
        dim=dim,
        preprocess_config=cfg,
        weights_sha256=weights_sha256,
    )


class OpenClipTextEmbedder:
    """The text tower on torch: strings -> vectors in the image tower's space."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, dim: int) -> None:
        self._model = model
        self._tokenizer = tokenizer
        self._name = name
        self._dim = dim
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        import torch

        if not texts:
            return np.zeros((0, self._dim), np.float32)
        tokens: torch.Tensor = self._tokenizer(list(texts))
        with self._lock, torch.inference_mode():
            out = self._model.encode_text(tokens, normalize=True)
        return l2_normalise(out.float().numpy())


def load_openclip_text(name: str, settings: Settings) -> OpenClipTextEmbedder:
    """The text half of ``open_clip:<arch>`` (needs torch and open_clip at run time)."""
    import torch

    open_clip = _open_clip()
    model, source = build_openclip(name, settings)
    try:
        tokenizer = open_clip.get_tokenizer(source)
    except Exception as exc:  # e.g. a Hugging Face tokenizer not in the local cache
        raise ModelUnavailable(f"cannot load the tokenizer of {name}: {exc}") from None
    # Serving text needs no image tower; free its memory.
    model.visual = torch.nn.Identity()
    with torch.inference_mode():
        dim = int(model.encode_text(tokenizer(["probe"])).shape[-1])
    return OpenClipTextEmbedder(model, tokenizer, name=name, dim=dim)
