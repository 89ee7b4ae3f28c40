"""The eager torch model behind the :class:`ImageEmbedder` protocol.

Used to export, and by tests and benchmarks to check the ONNX Runtime path
against the original. Needs the ``export`` extra (torch); never imported by
the serving path.
"""

from __future__ import annotations

import threading

import numpy as np
import torch

from shoplens.models.base import EmbedderBase, FloatArray, PreprocessConfig, l2_normalise


class NormalisedFeatures(torch.nn.Module):
    """Wraps a feature extractor so its output is already L2-normalised.

    Normalising inside the network means the exported ONNX graph and the
    eager model return the same thing, with nothing left for callers to forget.
    """

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        return torch.nn.functional.normalize(features.float(), p=2.0, dim=1, eps=1e-12)


class TorchEmbedder(EmbedderBase):
    """An eager ``NormalisedFeatures`` model with its preprocessing."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        name: str,
        dim: int,
        preprocess_config: PreprocessConfig,
        weights_sha256: str,
        head_dims: int | None = None,
    ) -> None:
        self.module = module.eval()
        self._name = name
        self._dim = dim
        self._cfg = preprocess_config
        self._head_dims = head_dims
        self.weights_sha256 = weights_sha256
        # torch modules are not documented as safe for concurrent forward().
        self._lock = threading.Lock()

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        if len(batch) == 0:
            return np.zeros((0, self._dim), np.float32)
        with self._lock, torch.inference_mode():
            out = self.module(torch.from_numpy(np.ascontiguousarray(batch, np.float32)))
        return l2_normalise(out.numpy())
