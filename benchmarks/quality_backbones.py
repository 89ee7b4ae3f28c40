"""Which backbone, ensemble and product scoring to adapt: the second quality study.

``python -m benchmarks.quality_backbones [--grocery G] [--cache DIR]``

Embeds the grocery catalog and val queries with the *production* embedders
(``load_embedder``: ONNX Runtime, the real decode and preprocessing, JPEG
draft decode like ``shoplens index``), caches the vectors under ``--cache``,
then scores every variant with the same metric as ``benchmarks.quality``
(product-level Recall@K, a product's score = its best catalog image) and the
LDA catalog adaptation of ``shoplens.models.adapt`` at its default settings
unless the row says otherwise. ``catalog-split R@1`` fits on part of the
catalog and queries the held-out iconic + last-shot photos (no val queries
involved); it is what a choice should agree with before val is believed.

Writes ``benchmarks/results/quality_backbones.json`` and the table between
the ``<!-- backbones -->`` markers of ``benchmarks/results/quality.md``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.common import DEFAULT_GROCERY, machine
from benchmarks.quality_common import (
    F32,
    catalog_split,
    l2n,
    load_labels,
    per_product,
    recall_from_scores,
)
from shoplens.config import Settings
from shoplens.models.adapt import fit_adaptation
from shoplens.models.base import ImageEmbedder
from shoplens.models.decode import decode_image
from shoplens.models.registry import load_embedder

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path("/tmp/shoplens_quality/backbones")
MODELS = (
    "effnet-lite0-ml-int8",
    "effnet-lite1-ml-int8",
    "effnet-lite2-ml-int8",
    "effnet-lite0-lite1-ml",
    "effnet-lite0-lite1-ml-int8",
)


@dataclass
class Row:
    variant: str
    r1: float
    r5: float
    r10: float
    split_r1: float | None
    infer_ms: float  # batch-1 ONNX Runtime inference per query photo, summed over members
    index_dim: int
    index_mb: float  # float32 catalog vectors as searched (after the adaptation)
    embed_s: float  # decode + embed the 2,721 catalog photos (wall, summed over models)
    fit_s: float | None  # fitting the adaptation on the whole catalog


@dataclass(frozen=True)
class Cost:
    """What a model costs per query (batch-1 ms) and per catalog (embedding seconds)."""

    ms: float
    embed_s: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.ms + other.ms, self.embed_s + other.embed_s)

    def twice_per_query(self) -> Cost:
        return Cost(2 * self.ms, self.embed_s)


# ---------------------------------------------------------------- vectors


def embed_all(emb: ImageEmbedder, files: Sequence[Path]) -> F32:
    draft = emb.preprocess_config.resize

    def prepare(path: Path) -> NDArray[np.float32]:
        return emb.prepare(decode_image(path.read_bytes(), draft_size=draft))

    out: list[NDArray[np.float32]] = []
    with ThreadPoolExecutor(2) as pool:
        prepared = list(pool.map(prepare, files))
    for i in range(0, len(prepared), 32):
        out.append(emb.embed_prepared(np.stack(prepared[i : i + 32])))
    return l2n(np.concatenate(out))


def batch1_ms(emb: ImageEmbedder, photo: Path, reps: int = 30) -> float:
    x = emb.prepare(decode_image(photo.read_bytes()))[None]
    emb.embed_prepared(x)
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        emb.embed_prepared(x)
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e3)


def vectors(grocery: Path, cache: Path, model: str) -> tuple[F32, F32, Cost]:
    """(catalog, val queries, cost) of ``model``, cached by name."""
    cache.mkdir(parents=True, exist_ok=True)
    files = {w: cache / f"{model}_{w}.npy" for w in ("catalog", "val")}
    timing = cache / f"{model}_cost.json"
    if all(f.exists() for f in files.values()) and timing.exists():
        cost = Cost(**json.loads(timing.read_text()))
        return np.load(files["catalog"]), np.load(files["val"]), cost
    emb = load_embedder(Settings(model=model))
    labels = load_labels(grocery)
    queries = [grocery / r for r in _query_images(grocery)]
    started = time.perf_counter()
    cat = embed_all(emb, [grocery / p for p in labels.catalog_images])
    cost = Cost(ms=0.0, embed_s=round(time.perf_counter() - started, 2))
    val = embed_all(emb, queries)
    cost = Cost(ms=round(batch1_ms(emb, queries[0]), 2), embed_s=cost.embed_s)
    np.save(files["catalog"], cat)
    np.save(files["val"], val)
    timing.write_text(json.dumps(asdict(cost)))
    return cat, val, cost


def _query_images(grocery: Path) -> list[str]:
    from benchmarks.quality_features import read_rows

    return [r["image"] for r in read_rows(grocery / "queries_val.csv")]


# ---------------------------------------------------------------- scoring


def centroid(c: F32, q: F32, products: NDArray[np.int_], n: int) -> F32:
    means = np.zeros((n, c.shape[1]), np.float32)
    np.add.at(means, products, c)
    return q @ l2n(means).T  # type: ignore[no-any-return]


class Study:
    def __init__(self, grocery: Path) -> None:
        labels = load_labels(grocery)
        self.names = sorted(set(labels.catalog_products))
        index = {p: i for i, p in enumerate(self.names)}
        self.pids = labels.catalog_products
        self.cat = np.array([index[p] for p in labels.catalog_products])
        self.truth = np.array([index[p] for p in labels.query_products])
        self.fit_idx, self.held_idx = catalog_split(labels)
        self.iconic = labels.iconic
        self.rows: list[Row] = []

    def _scores(self, how: str, c: F32, q: F32, products: NDArray[np.int_]) -> F32:
        n = len(self.names)
        if how == "centroid":
            return centroid(c, q, products, n)
        return per_product(q @ c.T, products, n, top=3 if how == "top3" else 1)

    def recall(self, scores: F32, truth: NDArray[np.int_]) -> tuple[float, float, float]:
        r = recall_from_scores(scores, self.names, [self.names[t] for t in truth])
        return round(r["R@1"], 6), round(r["R@5"], 6), round(r["R@10"], 6)

    def add(
        self,
        variant: str,
        c: F32,
        q: F32,
        cost: Cost,
        *,
        lda: dict[str, Any] | None = None,
        how: str = "max",
    ) -> Row:
        split: float | None = None
        fit_s: float | None = None
        if lda is not None:
            fit = self.fit_idx
            a = fit_adaptation(c[fit], [self.pids[i] for i in fit], **lda)
            assert a is not None
            held = a.apply(c[self.held_idx])
            s = self._scores(how, a.apply(c[fit]), held, self.cat[fit])
            split = self.recall(s, self.cat[self.held_idx])[0]
            started = time.perf_counter()
            a = fit_adaptation(c, self.pids, **lda)
            fit_s = round(time.perf_counter() - started, 2)
            assert a is not None
            c, q = a.apply(c), a.apply(q)
        r1, r5, r10 = self.recall(self._scores(how, c, q, self.cat), self.truth)
        row = _row(variant, (r1, r5, r10), split, cost, c, fit_s)
        self.rows.append(row)
        print(f"{variant:75s} {r1:.3f} {r5:.3f} {r10:.3f} split {split}", flush=True)
        return row

    def add_iconic(self, variant: str, c: F32, q: F32, cost: Cost) -> Row:
        """One studio photo per product: nothing to learn, the fallback's view."""
        ic = self.iconic
        scores = per_product(q @ c[ic].T, self.cat[ic], len(self.names))
        r1, r5, r10 = self.recall(scores, self.truth)
        row = _row(variant, (r1, r5, r10), None, cost, c[ic], None)
        self.rows.append(row)
        print(f"{variant:75s} {r1:.3f} {r5:.3f} {r10:.3f}", flush=True)
        return row


def _row(
    variant: str,
    recalls: tuple[float, float, float],
    split: float | None,
    cost: Cost,
    catalog: F32,
    fit_s: float | None,
) -> Row:
    mb = round(catalog.shape[0] * catalog.shape[1] * 4 / 1e6, 2)
    return Row(variant, *recalls, split, cost.ms, int(catalog.shape[1]), mb, cost.embed_s, fit_s)


def concat(*parts: F32) -> F32:
    return l2n(np.concatenate([l2n(p) for p in parts], axis=1))


def run(grocery: Path, cache: Path, roi: bool = False) -> list[Row]:
    st = Study(grocery)
    v = {m: vectors(grocery, cache, m) for m in MODELS}
    default = "effnet-lite0-lite1-ml-int8"
    lda: dict[str, Any] = {}  # fit_adaptation's defaults: shrinkage 0.3, dim 80
    for m in ("effnet-lite0-ml-int8", "effnet-lite1-ml-int8", "effnet-lite2-ml-int8"):
        c, q, cost = v[m]
        st.add(f"{m} plain", c, q, cost)
        st.add(f"{m} + LDA", c, q, cost, lda=lda)
    (c0, q0, k0), (c1, q1, k1), (c2, q2, k2) = (v[m] for m in MODELS[:3])
    st.add(
        "lite0-ml-int8 @224 + lite2-ml-int8 @260 (two inputs) + LDA",
        concat(c0, c2),
        concat(q0, q2),
        k0 + k2,
        lda=lda,
    )
    st.add(
        "lite0 @224 + lite1 @240 + lite2 @260 (three inputs) + LDA",
        concat(c0, c1, c2),
        concat(q0, q1, q2),
        k0 + k1 + k2,
        lda=lda,
    )
    c, q, cost = v["effnet-lite0-lite1-ml"]
    st.add("effnet-lite0-lite1-ml (fp32, one 240 px input) + LDA", c, q, cost, lda=lda)
    c, q, cost = v[default]
    st.add(f"{default} plain", c, q, cost)
    st.add(f"{default} head dims only (2 x 1280)", l2n(c[:, :2560]), l2n(q[:, :2560]), cost)
    st.add(f"**{default} + LDA (default)**", c, q, cost, lda=lda)
    for kw in ({"shrinkage": 0.1}, {"shrinkage": 0.5}, {"dim": 128}):
        st.add(f"{default} + LDA {kw}", c, q, cost, lda=kw)
    st.add(f"{default} + LDA, product = mean of its top-3 images", c, q, cost, lda=lda, how="top3")
    st.add(f"{default} + LDA, product = its mean vector", c, q, cost, lda=lda, how="centroid")
    st.add_iconic(
        "iconic only: effnet-lite0-ml-int8 head fallback", l2n(c0[:, :1280]), l2n(q0[:, :1280]), k0
    )
    st.add_iconic(f"iconic only: {default} head fallback", l2n(c[:, :2560]), l2n(q[:, :2560]), cost)
    if roi:
        roi_rows(st, grocery, c, q, cost)
    return st.rows


def roi_rows(st: Study, grocery: Path, c: F32, q: F32, cost: Cost) -> None:
    """Automatic region of interest from the network's own activations (needs torch):
    saliency = channel sum of Lite0's last feature map over the whole (squashed)
    photo; crop the query to the box of cells above ``thr`` x max, plus a 15 %
    margin, and embed the crop (+1 forward pass per query). Catalog unchanged."""
    import torch

    from shoplens.models.base import PreprocessConfig, preprocess
    from shoplens.models.effnet import EFFNET_SPECS, build_classifier

    net: Any = build_classifier(EFFNET_SPECS["effnet-lite0"])
    emb = load_embedder(Settings(model="effnet-lite0-lite1-ml-int8"))
    square = PreprocessConfig(resize=224, crop=224)

    def crop(image: Any, thr: float, margin: float = 0.15) -> Any:
        x = preprocess(image.resize((224, 224), 3), square)
        with torch.no_grad():
            fmap = net.forward_features(torch.from_numpy(x[None]))[0]
        sal = fmap.clamp(min=0).sum(0).numpy()
        ys, xs = np.where(sal >= thr * sal.max())
        h, w = sal.shape
        y0, x0 = max(0.0, ys.min() / h - margin), max(0.0, xs.min() / w - margin)
        y1, x1 = min(1.0, (ys.max() + 1) / h + margin), min(1.0, (xs.max() + 1) / w + margin)
        width, height = image.size
        return image.crop((int(x0 * width), int(y0 * height), int(x1 * width), int(y1 * height)))

    photos = [decode_image((grocery / p).read_bytes()) for p in _query_images(grocery)]
    for thr in (0.2, 0.35, 0.5):
        qc = emb.embed([crop(im, thr) for im in photos])
        crop_row = st.add(
            f"auto-crop queries (saliency >= {thr} x max) + LDA",
            c,
            qc,
            cost.twice_per_query(),
            lda={},
        )
        both = l2n(q + qc)
        mean_row = st.add(
            f"mean of full and auto-crop ({thr}) query vectors + LDA",
            c,
            both,
            cost.twice_per_query(),
            lda={},
        )
        # The catalog split involves no query, so it cannot judge a query-side change.
        crop_row.split_r1 = mean_row.split_r1 = None


def markdown(rows: list[Row]) -> str:
    lines = [
        "| variant | R@1 | R@5 | R@10 | catalog-split R@1 | inference ms (batch 1) "
        "| index dim | index MB | catalog embed s | LDA fit s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        split = "" if r.split_r1 is None else f"{r.split_r1:.3f}"
        fit = "" if r.fit_s is None else f"{r.fit_s:.1f}"
        lines.append(
            f"| {r.variant} | {r.r1:.3f} | {r.r5:.3f} | {r.r10:.3f} | {split} "
            f"| {r.infer_ms:.1f} | {r.index_dim} | {r.index_mb:.2f} | {r.embed_s:.1f} | {fit} |"
        )
    return "\n".join(lines)


def write(rows: list[Row]) -> None:
    (RESULTS / "quality_backbones.json").write_text(
        json.dumps({"rows": [asdict(r) for r in rows], "machine": machine()}, indent=2) + "\n"
    )
    md = RESULTS / "quality.md"
    text = md.read_text()
    a, b = text.index("<!-- backbones -->"), text.index("<!-- /backbones -->")
    md.write_text(text[: a + len("<!-- backbones -->")] + "\n" + markdown(rows) + "\n" + text[b:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--roi", action="store_true", help="also the auto-crop rows (needs torch)")
    args = ap.parse_args()
    if not (args.grocery / "catalog.csv").is_file():
        raise SystemExit(f"no grocery data at {args.grocery} (use --grocery)")
    write(run(args.grocery, args.cache, args.roi))


if __name__ == "__main__":
    main()
