"""The default model's weights are the real ImageNet ones, paired key by key."""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from shoplens.errors import ModelUnavailable
from shoplens.models.base import preprocess
from shoplens.models.effnet import EFFNET_SPECS, build_classifier, pair_state_dict
from tests.models.conftest import IMAGENET_CLASSES

if TYPE_CHECKING:
    import torch
else:
    torch = pytest.importorskip("torch")
pytest.importorskip("timm")


@pytest.fixture(scope="module")
def classifier() -> torch.nn.Module:
    return build_classifier(EFFNET_SPECS["effnet-lite0"])


@pytest.mark.parametrize("name", sorted(IMAGENET_CLASSES))
def test_known_photo_gets_its_imagenet_class(
    classifier: torch.nn.Module, photos: dict[str, Image.Image], name: str
) -> None:
    cfg = EFFNET_SPECS["effnet-lite0"].preprocess_config
    x = torch.from_numpy(preprocess(photos[name], cfg))[None]
    with torch.inference_mode():
        top5 = classifier(x)[0].topk(5).indices.tolist()
    assert top5[0] == IMAGENET_CLASSES[name], f"{name}: top-5 {top5}"


def test_pairing_refuses_a_shape_mismatch() -> None:
    target = OrderedDict(a=torch.zeros(3, 2), b=torch.zeros(4))
    source = OrderedDict(x=torch.zeros(3, 2), y=torch.zeros(5))
    with pytest.raises(ModelUnavailable, match=r"y \(5,\) cannot be b \(4,\)"):
        pair_state_dict(source, target)


def test_pairing_refuses_a_count_mismatch() -> None:
    with pytest.raises(ModelUnavailable, match="1 tensors but the network expects 2"):
        pair_state_dict(
            OrderedDict(x=torch.zeros(1)), OrderedDict(a=torch.zeros(1), b=torch.zeros(1))
        )


def test_pairing_renames_in_order() -> None:
    source = OrderedDict(x=torch.ones(2), y=torch.zeros(2))
    paired = pair_state_dict(source, OrderedDict(a=torch.empty(2), b=torch.empty(2)))
    assert list(paired) == ["a", "b"]
    assert np.array_equal(paired["a"].numpy(), [1.0, 1.0])


def test_preprocessing_is_the_tf_lite_one() -> None:
    cfg = EFFNET_SPECS["effnet-lite0"].preprocess_config
    assert (cfg.resize, cfg.crop, cfg.interpolation) == (256, 224, "bicubic")
    assert cfg.mean == cfg.std == (0.5, 0.5, 0.5)


@pytest.mark.parametrize("name", ["effnet-lite1", "effnet-lite2"])
def test_bigger_lite_models_load_and_classify(name: str, photos: dict[str, Image.Image]) -> None:
    spec = EFFNET_SPECS[name]
    network = build_classifier(spec)  # every tensor paired and shape-checked
    x = torch.from_numpy(preprocess(photos["granny-smith.jpg"], spec.preprocess_config))[None]
    assert x.shape[-1] == spec.input_size
    with torch.inference_mode():
        assert int(network(x)[0].argmax()) == IMAGENET_CLASSES["granny-smith.jpg"]
