"""Stretch variant: fine-tune the last MBConv block + conv head on the catalog.

Trains ``blocks[6] + conv_head + bn2`` of EfficientNet-Lite0 on the cached
stage-5 maps (``catalog_s5.npy``, 192x7x7) of the catalog photos with a
normalised-softmax loss (one proxy per product, temperature 0.05) and
feature-map augmentation (random 5-7 cell crops, horizontal flip, channel
jitter, dropout). Reports val Recall@K of the fine-tuned avg-pooled features,
plain and with the LDA adaptation on top, after every epoch, and writes
``benchmarks/results/quality_finetune.json`` (rows merged into the table by
:mod:`benchmarks.quality_variants`). About 3 minutes an epoch on 2 shared cores.

    python -m benchmarks.quality_finetune [--epochs 6]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.quality_common import l2n, load_labels, recall
from benchmarks.quality_features import DEFAULT_CACHE, DEFAULT_GROCERY, load_backbone
from benchmarks.quality_variants import RESULTS, Row
from shoplens.models.adapt import fit_adaptation


class Tail(torch.nn.Module):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.block = copy.deepcopy(model.blocks[6])
        self.head = copy.deepcopy(model.conv_head)
        self.bn = copy.deepcopy(model.bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.bn(self.head(self.block(x))).mean((2, 3))
        return out


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    if rng.random() < 0.5:
        x = x.flip(3)
    s = int(rng.integers(5, 8))
    i, j = int(rng.integers(0, 8 - s)), int(rng.integers(0, 8 - s))
    x = x[:, :, i : i + s, j : j + s]
    x = x * (1 + 0.2 * torch.randn(x.shape[0], x.shape[1], 1, 1))
    return torch.nn.functional.dropout(x, 0.1)


def run(grocery: Path, cache: Path, epochs: int) -> list[Row]:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    labels = load_labels(grocery)
    cp, qp = labels.catalog_products, labels.query_products
    names = sorted(set(cp))
    y = torch.tensor([names.index(p) for p in cp])
    d = cache / "lite0"
    c5 = torch.from_numpy(np.load(d / "catalog_s5.npy").astype(np.float32))
    q5 = torch.from_numpy(np.load(d / "queries_val_s5.npy").astype(np.float32))
    tail = Tail(load_backbone("lite0")).eval()
    with torch.no_grad():
        c = l2n(tail(c5).numpy())
    proxies = torch.nn.Parameter(
        torch.nn.functional.normalize(
            torch.stack([torch.from_numpy(c)[y == i].mean(0) for i in range(len(names))]), dim=1
        )
    )
    opt = torch.optim.AdamW(
        [{"params": tail.parameters(), "lr": 1e-4}, {"params": [proxies], "lr": 1e-2}],
        weight_decay=1e-4,
    )
    rows: list[Row] = []
    train_s = 0.0
    for epoch in range(1, epochs + 1):
        tail.train()
        t0 = time.perf_counter()
        perm = torch.randperm(len(y))
        for k in range(0, len(y), 64):
            b = perm[k : k + 64]
            z = torch.nn.functional.normalize(tail(_augment(c5[b], rng)), dim=1)
            logits = z @ torch.nn.functional.normalize(proxies, dim=1).T / 0.05
            loss = torch.nn.functional.cross_entropy(logits, y[b])
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        train_s += time.perf_counter() - t0
        tail.eval()
        with torch.no_grad():
            c, q = l2n(tail(c5).numpy()), l2n(tail(q5).numpy())
        r = recall(q, c, cp, qp)
        ad = fit_adaptation(c, cp, shrinkage=0.3)
        assert ad is not None
        r2 = recall(ad.apply(q), ad.apply(c), cp, qp)
        print(epoch, round(train_s), r, "lda", r2, flush=True)
        if epoch == epochs:
            for name, rr in (("", r), (" + LDA", r2)):
                rows.append(
                    Row(
                        f"fine-tune blocks[6]+head, {epochs} epochs{name}",
                        "fine-tuning",
                        rr["R@1"],
                        rr["R@5"],
                        rr["R@10"],
                        0.0,
                        "",
                        round(c.nbytes / 2**20 if not name else ad.apply(c).nbytes / 2**20, 2),
                        round(train_s, 1),
                        None,
                        "per-catalog re-export of the ONNX model",
                    )
                )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    rows = run(args.grocery, args.cache, args.epochs)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality_finetune.json").write_text(
        json.dumps([asdict(r) for r in rows], indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
