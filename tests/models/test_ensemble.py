"""effnet-lite0-lite1-ml: Lite0 and Lite1 side by side on one 240 px input (the default's
float32 model), exported once per machine into the shared model cache like every model.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shoplens.config import Settings
from shoplens.models import registry
from shoplens.models.base import l2_normalise
from shoplens.models.effnet import EFFNET_SPECS, head_dims, weights_path
from shoplens.models.hashing import file_sha256
from shoplens.models.onnx_embedder import OnnxEmbedder

pytest.importorskip("torch")
pytest.importorskip("timm")

from shoplens.models.effnet import load_effnet
from shoplens.models.pooling import EnsembleEmbedder, MultiLayerEmbedder
from shoplens.models.torch_embedder import TorchEmbedder

NAME = "effnet-lite0-lite1-ml"
HEAD = 1280
STAGES = (192, 112)  # Lite0 and Lite1 both have 192- and 112-wide stages 5 and 4
DIM = 2 * HEAD + 2 * sum(STAGES)


@pytest.fixture(scope="module")
def duo() -> OnnxEmbedder:
    loaded = registry.load_embedder(Settings(model=NAME))
    assert isinstance(loaded, OnnxEmbedder)
    return loaded


@pytest.fixture(scope="module")
def duo_torch() -> TorchEmbedder:
    return registry.load_torch_embedder(NAME, Settings())


@pytest.fixture(scope="module")
def batch(duo: OnnxEmbedder, photos: dict[str, Image.Image]) -> np.ndarray:
    return np.stack([duo.prepare(im) for im in photos.values()])


def test_registered_as_the_default_with_lite1_preprocessing(duo: OnnxEmbedder) -> None:
    assert Settings().model == registry.DEFAULT_MODEL == NAME + "-int8"
    infos = {m.name: m for m in registry.available_models()}
    assert (infos[NAME].dim, infos[NAME].input_size) == (DIM, 240)
    assert infos[NAME + "-int8"].dim == DIM
    assert "efficientnet-lite0" in infos[NAME].description
    assert "efficientnet-lite1" in infos[NAME].description
    # Both members run on Lite1's input: short side 272, centre 240.
    assert duo.preprocess_config == EFFNET_SPECS["effnet-lite1"].preprocess_config
    assert head_dims(NAME) == head_dims(NAME + "-int8") == 2 * HEAD
    assert EFFNET_SPECS[NAME].head_dims == duo.head_dims == 2 * HEAD


def test_export_is_named_by_both_members_weights(duo: OnnxEmbedder) -> None:
    settings = Settings()
    member_shas = [
        file_sha256(weights_path(EFFNET_SPECS[m]), settings.model_cache_dir)
        for m in ("effnet-lite0", "effnet-lite1")
    ]
    expected = hashlib.sha256("\n".join(member_shas).encode()).hexdigest()
    assert registry.weights_sha256(NAME, settings) == expected
    meta = json.loads((duo.model_dir / "meta.json").read_text())
    assert (meta["name"], meta["dim"], meta["weights_sha256"]) == (NAME, DIM, expected)
    assert expected not in member_shas


def test_torch_and_onnx_runtime_agree(
    duo: OnnxEmbedder, duo_torch: TorchEmbedder, batch: np.ndarray
) -> None:
    assert duo_torch.dim == DIM and duo_torch.head_dims == 2 * HEAD
    out = duo.embed_prepared(batch)
    assert out.shape == (len(batch), DIM) and out.dtype == np.float32
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(out * duo_torch.embed_prepared(batch), axis=1)
    assert cosine.min() > 0.999, cosine


def test_layout_is_both_heads_then_each_members_stages(
    duo: OnnxEmbedder, batch: np.ndarray
) -> None:
    """[lite0 head | lite1 head | lite0 s5 | lite0 s4 | lite1 s5 | lite1 s4], each part
    normalised before the whole: each member's own multi-layer parts, reordered."""
    assert batch.shape[-2:] == (240, 240)
    out = duo.embed_prepared(batch)
    cuts = np.cumsum([HEAD, HEAD, *STAGES, *STAGES])[:-1]
    parts = np.split(out, cuts, axis=1)
    norms = np.stack([np.linalg.norm(p, axis=1) for p in parts], axis=1)
    assert np.allclose(norms, 1 / np.sqrt(6), atol=1e-4)
    for member, (head, s5, s4) in zip(
        ("effnet-lite0-ml", "effnet-lite1-ml"),
        ((0, 2, 3), (1, 4, 5)),
        strict=True,
    ):
        alone = load_effnet(member, "test").embed_prepared(batch)  # same 240 px input
        own = l2_normalise(np.concatenate([parts[head], parts[s5], parts[s4]], axis=1))
        cosine = np.sum(alone * own, axis=1)
        assert cosine.min() > 0.999, (member, cosine)


def test_same_product_is_closer_than_other_products(
    duo: OnnxEmbedder, photos: dict[str, Image.Image]
) -> None:
    banana = photos["banana.jpg"]
    flipped = banana.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = duo.embed([banana, flipped, photos["granny-smith.jpg"], photos["pineapple.jpg"]])
    assert v[0] @ v[1] > max(v[0] @ v[2], v[0] @ v[3])


def test_int8_variant_stays_close_to_float32(duo: OnnxEmbedder, batch: np.ndarray) -> None:
    int8 = registry.load_embedder(Settings(model=NAME + "-int8"))
    assert isinstance(int8, OnnxEmbedder)
    assert (int8.name, int8.dim, int8.head_dims) == (NAME + "-int8", DIM, 2 * HEAD)
    cosine = np.sum(int8.embed_prepared(batch) * duo.embed_prepared(batch), axis=1)
    assert cosine.mean() > 0.95, cosine


def test_an_int8_export_older_than_head_dims_in_its_metadata_still_has_them(
    tmp_path: Path,
) -> None:
    """Derived at load from the float32 model the folder was quantized from."""
    int8 = registry.load_embedder(Settings(model=NAME + "-int8"))
    assert isinstance(int8, OnnxEmbedder)
    old = tmp_path / int8.model_dir.name
    shutil.copytree(int8.model_dir, old)
    meta = json.loads((old / "meta.json").read_text())
    meta.pop("head_dims", None)
    (old / "meta.json").write_text(json.dumps(meta))
    assert OnnxEmbedder(old).head_dims == 2 * HEAD


def test_an_ensemble_needs_two_members() -> None:
    lite0 = load_effnet("effnet-lite0-ml", "test").module
    assert isinstance(lite0, MultiLayerEmbedder)
    with pytest.raises(ValueError, match="two members"):
        EnsembleEmbedder([lite0])
