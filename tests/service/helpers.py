"""Helpers shared by the service tests (catalog generation, request shortcuts)."""

from __future__ import annotations

import csv
import json
import random
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from starlette.testclient import TestClient

from shoplens import demo
from shoplens.config import Settings
from shoplens.models.base import PreprocessConfig
from shoplens.models.cache import META_FILE, MODEL_FILE, PREPROCESS_FILE

ADMIN_TOKEN = "test-admin-token"
STAND_IN = "stand-in-thumbnail"
N_SYNTHETIC = 219  # + 81 demo products = 300: three of them make a 1% filter
RARE = ("synthetic-007", "synthetic-100", "synthetic-200")


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    out = BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def synthetic_photo(seed: int, size: int = 160) -> Image.Image:
    """A generated 'product shot': coloured shapes on a gradient, distinct per seed."""
    rnd = random.Random(seed)
    a = [rnd.randrange(256) for _ in range(3)]
    b = [rnd.randrange(256) for _ in range(3)]
    rows = []
    for y in range(size):
        t = y / (size - 1)
        rows.append([int(a[i] * (1 - t) + b[i] * t) for i in range(3)])
    # The vertical gradient as one array: setting pixels one by one made generating
    # the catalogs a noticeable part of the service tests' time.
    gradient = np.repeat(np.asarray(rows, np.uint8)[:, np.newaxis, :], size, axis=1)
    img = Image.fromarray(gradient, "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(rnd.randint(2, 5)):
        x0, y0 = rnd.randrange(size - 20), rnd.randrange(size - 20)
        x1, y1 = x0 + rnd.randint(15, size - x0), y0 + rnd.randint(15, size - y0)
        fill = tuple(rnd.randrange(256) for _ in range(3))
        if rnd.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
    return img


def write_catalog(folder: Path, n_synthetic: int = N_SYNTHETIC) -> Path:
    """The demo catalog (real photos) plus generated products; returns the manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = folder / "photos"
    photos.mkdir(exist_ok=True)
    with demo.manifest_path().open(encoding="utf-8", newline="") as f:
        rows: list[dict[str, Any]] = list(csv.DictReader(f))
    for row in rows:
        row["image"] = str(demo.DEMO_DIR / row["image"])
        row["brand"] = "grocer"
    for i in range(n_synthetic):
        pid = f"synthetic-{i:03d}"
        name = f"{pid}.jpg"
        (photos / name).write_bytes(jpeg_bytes(synthetic_photo(i)))
        rare = pid in RARE
        rows.append(
            {
                "product_id": pid,
                "title": f"Synthetic thing {i}",
                "category": "Rare" if rare else "Synthetic",
                "description": "generated for tests",
                "image": f"photos/{name}",
                "price": "999.00" if rare else f"{5 + i % 50}.50",
                "currency": "EUR",
                "in_stock": "false" if i % 10 == 3 else "true",
                "brand": "acme",
            }
        )
    manifest = folder / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[-1].keys()))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def demo_photo(product_id: str) -> bytes:
    return (demo.DEMO_DIR / "images" / f"{product_id}.jpg").read_bytes()


def search(client: TestClient, data: bytes, **params: Any) -> Any:
    return client.post("/v1/search", params=params, files={"image": ("q.jpg", data, "image/jpeg")})


# The configured default model (SHOPLENS_MODEL may override): what real_model tests serve.
DEFAULT_MODEL = Settings().model


def write_stand_in_model(folder: Path, grid: int = 4) -> Path:
    """An exported-model folder (``model.onnx``, ``preprocess.json``, ``meta.json``) for
    the service tests' stand-in model; returns ``folder``.

    The network is an average pool to a ``grid`` x ``grid`` colour thumbnail (48
    dims, no weights), so it runs in microseconds on ONNX Runtime; the
    preprocessing is the usual 256 -> 224 centre crop, so decoding, the photos the
    indexer stores and search crops are those of a real model.
    """
    import onnx
    from onnx import TensorProto, helper

    cfg = PreprocessConfig()
    cell = cfg.crop // grid
    dim = 3 * grid * grid
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool",
                ["pixels"],
                ["cells"],
                kernel_shape=[cell, cell],
                strides=[cell, cell],
            ),
            helper.make_node("Flatten", ["cells"], ["embedding"], axis=1),
        ],
        STAND_IN,
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, cfg.crop, cfg.crop])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", dim])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / MODEL_FILE))
    (folder / PREPROCESS_FILE).write_text(json.dumps(cfg.to_dict()), encoding="utf-8")
    (folder / META_FILE).write_text(json.dumps({"name": STAND_IN, "dim": dim}), encoding="utf-8")
    return folder
