"""The serving embedder: an exported model on ONNX Runtime (no torch needed).

Everything it needs to know about the model is in the export's folder
(:mod:`shoplens.models.cache`): the graph, the preprocessing and ``meta.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from shoplens.errors import ModelUnavailable
from shoplens.models.base import EmbedderBase, FloatArray, PreprocessConfig, l2_normalise
from shoplens.models.cache import MODEL_FILE, PREPROCESS_FILE, read_meta
from shoplens.models.effnet import EFFNET_SPECS


def _head_dims(meta: dict[str, Any]) -> int | None:
    """The export's ``head_dims`` (see :attr:`ImageEmbedder.head_dims`).

    Exports made before ``meta.json`` recorded it are still in caches (same
    export format: what they compute did not change). For those it is derived
    here, once per load: only the built-in multi-layer EfficientNets have a
    head part, and an int8 folder names the float32 model it was made from.
    """
    if "head_dims" in meta:
        return None if meta["head_dims"] is None else int(meta["head_dims"])
    spec = EFFNET_SPECS.get(str(meta.get("float32_name", meta.get("name"))))
    return None if spec is None else spec.head_dims


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # One graph, run node after node; parallelism comes from intra-op threads
    # (and from callers running batches on several threads).
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = max(0, threads)  # 0: ORT picks (one per core)
    options.inter_op_num_threads = 1
    # Idle ORT workers normally spin for work. The service shares its cores
    # with decode workers and other requests, and on a busy 2-core box
    # spinning doubled batch-1 latency and CPU use; blocking costs little.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


class OnnxEmbedder(EmbedderBase):
    """An :class:`~shoplens.models.base.ImageEmbedder` backed by one ORT session.

    ``InferenceSession.run`` is safe to call from several threads at once, so
    one instance serves every request and indexing worker.
    """

    def __init__(self, model_dir: Path, threads: int = 0) -> None:
        self.model_dir = Path(model_dir)
        self.meta = read_meta(self.model_dir)
        try:
            cfg = json.loads((self.model_dir / PREPROCESS_FILE).read_text(encoding="utf-8"))
            self._cfg = PreprocessConfig.from_dict(cfg)
            self._session = ort.InferenceSession(
                str(self.model_dir / MODEL_FILE),
                sess_options=session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as exc:  # ORT raises its own (non-OSError) types for bad files
            raise ModelUnavailable(f"cannot load the model in {self.model_dir}: {exc}") from None
        self._input = self._session.get_inputs()[0].name
        self._name = str(self.meta["name"])
        self._dim = int(self.meta["dim"])
        self._head_dims = _head_dims(self.meta)
        self.threads = threads

    @property
    def weights_sha256(self) -> str:
        return str(self.meta.get("weights_sha256", ""))

    def embed_prepared(self, batch: FloatArray) -> FloatArray:
        if len(batch) == 0:
            return np.zeros((0, self._dim), np.float32)
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        (out,) = self._session.run(None, {self._input: batch})
        # The graph already normalises; this keeps the float32 contract exact.
        return l2_normalise(np.asarray(out))

    def __repr__(self) -> str:
        return f"OnnxEmbedder({self._name!r}, dim={self._dim}, dir={str(self.model_dir)!r})"
