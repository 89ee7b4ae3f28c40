"""Descriptor heads the ONNX export can wrap around a timm EfficientNet backbone.

:class:`MultiLayerEmbedder` is the descriptor the catalog adaptation
(:mod:`shoplens.models.adapt`) works best on (``benchmarks/results/quality.md``):
the usual average-pooled last feature map, concatenated with the average-pooled
outputs of the two preceding stages, each part L2-normalised so that none
dominates by scale. For EfficientNet-Lite0 that is 1280 + 192 + 112 = 1584
dimensions, at no extra inference cost (the stages are computed anyway).

:class:`EnsembleEmbedder` runs several of them (Lite0 and Lite1 for the default
model ``effnet-lite0-lite1-ml``) on the same input as one graph: two networks
trained at different sizes err differently, and LDA on their joint descriptor
beats either alone (grocery val R@1 0.861 vs 0.804 for Lite0, 0.797 for Lite1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn


def _l2n(x: torch.Tensor) -> torch.Tensor:
    return nn.functional.normalize(x, dim=1, eps=1e-12)


class MultiLayerEmbedder(nn.Module):
    """``concat[l2n(avg(head)), l2n(avg(blocks[i])) for i in taps]``, L2-normalised.

    ``backbone`` is a timm EfficientNet(-Lite) (``conv_stem``, ``bn1``,
    ``blocks``, ``conv_head``, ``bn2``); ``taps`` are block-stage indices whose
    outputs (the raw linear-bottleneck maps, no activation) are average-pooled.
    """

    def __init__(self, backbone: Any, taps: Sequence[int] = (5, 4)) -> None:
        super().__init__()
        self.backbone = backbone
        self.taps = tuple(int(t) for t in taps)
        n_blocks = len(backbone.blocks)
        if any(not 0 <= t < n_blocks for t in self.taps):
            raise ValueError(f"taps {self.taps} outside the {n_blocks} block stages")

    @property
    def dim(self) -> int:
        stages = self.backbone.blocks
        widths = [int(self.backbone.num_features)]
        widths += [int(_out_channels(stages[t])) for t in self.taps]
        return sum(widths)

    def parts(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[l2n(avg(head)), l2n(avg(blocks[t])) for t in taps]``, each ``(n, width)``."""
        b = self.backbone
        x = b.bn1(b.conv_stem(x))
        pooled: dict[int, torch.Tensor] = {}
        for i, stage in enumerate(b.blocks):
            x = stage(x)
            if i in self.taps:
                pooled[i] = _l2n(x.mean(dim=(2, 3)))
        head = _l2n(b.bn2(b.conv_head(x)).clamp(min=0).mean(dim=(2, 3)))
        return [head, *(pooled[t] for t in self.taps)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _l2n(torch.cat(self.parts(x), dim=1))


class EnsembleEmbedder(nn.Module):
    """Several :class:`MultiLayerEmbedder` on the same input, as one descriptor.

    Output: ``l2n(concat[every member's head part, then every member's stage
    parts])``. Heads first so that the leading ``1280 * len(members)`` dims are
    the head-only descriptor a catalog without anything to learn from falls back
    to (``EffnetSpec.head_dims``, recorded in the export's metadata). Members are
    fully convolutional with global pooling, so they share one input size (the
    largest member's).
    """

    def __init__(self, members: Sequence[MultiLayerEmbedder]) -> None:
        super().__init__()
        if len(members) < 2:
            raise ValueError("an ensemble needs at least two members")
        self.members = nn.ModuleList(members)

    @property
    def dim(self) -> int:
        return sum(cast(MultiLayerEmbedder, m).dim for m in self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = [cast(MultiLayerEmbedder, m).parts(x) for m in self.members]
        heads = [p[0] for p in parts]
        stages = [t for p in parts for t in p[1:]]
        return _l2n(torch.cat([*heads, *stages], dim=1))


def _out_channels(stage: nn.Module) -> int:
    convs = [m for m in stage.modules() if isinstance(m, nn.Conv2d)]
    return int(convs[-1].out_channels)
