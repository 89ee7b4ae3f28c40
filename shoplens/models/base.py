"""The embedder interface and the one preprocessing function both paths share.

Torch (export, tests) and ONNX Runtime (indexing, serving) feed the network
arrays made by :func:`preprocess`, so the two paths cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

FloatArray = NDArray[np.float32]

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


@dataclass(frozen=True)
class PreprocessConfig:
    """How a photo becomes the network's input tensor; saved beside every export."""

    resize: int = 256  # short side is resized to this ...
    crop: int = 224  # ... then a centre square of this side is cut
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessConfig:
        return cls(
            resize=int(d["resize"]),
            crop=int(d["crop"]),
            interpolation=str(d["interpolation"]),
            mean=tuple(float(x) for x in d["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in d["std"]),  # type: ignore[arg-type]
            extra=dict(d.get("extra", {})),
        )


def resize_short_side(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    w, h = image.size
    scale = size / min(w, h)
    new = (max(1, round(w * scale)), max(1, round(h * scale)))
    if new == (w, h):
        return image
    return image.resize(new, _RESAMPLE[interpolation])


def preprocess(image: Image.Image, cfg: PreprocessConfig) -> FloatArray:
    """One RGB image -> ``(3, crop, crop)`` float32, normalised."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    if cfg.extra.get("resize_mode") == "squash":
        # Models trained on squashed inputs (SigLIP) see the whole photo, distorted.
        image = image.resize((cfg.crop, cfg.crop), _RESAMPLE[cfg.interpolation])
    else:
        image = resize_short_side(image, cfg.resize, cfg.interpolation)
    w, h = image.size
    left = (w - cfg.crop) // 2
    top = (h - cfg.crop) // 2
    image = image.crop((left, top, left + cfg.crop, top + cfg.crop))
    # Channels first while still uint8 (a cheap copy), then normalise each
    # channel plane with scalars: broadcasting a length-3 mean/std over the
    # last axis of HWC made numpy spend more time than the resize. Same float32
    # operations in the same order, so the result is bit for bit the same.
    chw = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
    arr: FloatArray = chw.astype(np.float32)
    arr *= np.float32(1.0 / 255.0)
    arr -= np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    arr /= np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return arr


def preprocess_batch(images: Sequence[Image.Image], cfg: PreprocessConfig) -> FloatArray:
    return np.stack([preprocess(im, cfg) for im in images]).astype(np.float32, copy=False)


def l2_normalise(x: NDArray[np.floating[Any]]) -> FloatArray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: FloatArray = (x / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return out


@runtime_checkable
class ImageEmbedder(Protocol):
    """A batch of RGB images in, float32 ``(n, dim)`` L2-normalised vectors out."""

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    @property
    def preprocess_config(self) -> PreprocessConfig: ...

    @property
    def head_dims(self) -> int | None:
        """How many leading dims are plain pooled head features (a multi-layer
        descriptor's part that generalises from one photo per product); None
        when the vector has no such part."""
        ...

    def prepare(self, image: Image.Image) -> FloatArray:
        """One decoded image -> the network input (thread-safe; run on workers)."""
        ...

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        """Stacked :meth:`prepare` outputs -> L2-normalised vectors."""
        ...

    def embed(self, images: Sequence[Image.Image]) -> FloatArray:
        """Convenience: prepare + embed_prepared."""
        ...


@runtime_checkable
class TextEmbedder(Protocol):
    """Texts in, vectors in the same space as the paired image model out.

    Only models trained on image-text pairs (OpenCLIP) have one; the service
    answers ``text_search_unavailable`` when the registry gives none.
    """

    @property
    def name(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def embed_text(self, texts: Sequence[str]) -> FloatArray:
        """``n`` strings -> float32 ``(n, dim)`` L2-normalised vectors."""
        ...


class EmbedderBase:
    """What every image embedder shares: identity, preprocessing, ``embed``.

    Subclasses set ``_name``, ``_dim``, ``_cfg`` (and ``_head_dims`` when the
    model has a head part) and implement :meth:`embed_prepared` (their
    runtime: ONNX Runtime, torch).
    """

    _name: str
    _dim: int
    _cfg: PreprocessConfig
    _head_dims: int | None = None

    @property
    def name(self) -> str:
        return self._name

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self._cfg

    @property
    def head_dims(self) -> int | None:
        return self._head_dims

    def prepare(self, image: Image.Image) -> FloatArray:
        return preprocess(image, self._cfg)

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        raise NotImplementedError

    def embed(self, images: Sequence[Image.Image]) -> FloatArray:
        if not images:
            return np.zeros((0, self._dim), np.float32)
        return self.embed_prepared(np.stack([self.prepare(im) for im in images]))
