"""The studio-catalog study's cheap ideas, from cached embeddings (quality.md, study 3).

``python -m benchmarks.quality_studio_ideas [--grocery G] [--cache DIR]``

Embeds, once (cached as ``.npy`` under ``--cache``), the val queries, the
grocery train photos (the dev queries: every parameter is chosen on them) and
the 81 studio photos plus variants of them (mirror, white-mask crops, a tiled
"shelf"), with the default model's ONNX embedder and the real decode. Then
scores each idea on the head-only features (the studio fallback) in seconds:
catalog-side variants, centring, PCA whitening fitted on the catalog, a colour
histogram fused with the embedding, and a cross-fitted LDA (learnt on half the
products, measured on the other half, both ways). Geometric re-ranking is
measured end to end by ``benchmarks.quality_studio``.
Writes ``benchmarks/results/quality_studio_ideas.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from benchmarks.common import DEFAULT_GROCERY, machine, read_csv, write_results
from benchmarks.quality_common import l2n, recall_from_scores
from shoplens.config import Settings
from shoplens.models.adapt import fit_adaptation
from shoplens.models.decode import decode_image
from shoplens.models.localise import mask_box, white_background_mask
from shoplens.models.registry import load_embedder

F32 = NDArray[np.float32]


def _crop(im: Image.Image) -> Image.Image:
    mask = white_background_mask(np.asarray(im.convert("RGB")))
    return im if mask is None else im.crop(mask_box(mask))


def _square(im: Image.Image) -> Image.Image:
    side = max(im.size)
    out = Image.new("RGB", (side, side), (255, 255, 255))
    out.paste(im, ((side - im.width) // 2, (side - im.height) // 2))
    return out


def _tile(im: Image.Image, n: int) -> Image.Image:
    tile = _square(im)
    out = Image.new("RGB", (tile.width * n, tile.width * n), (255, 255, 255))
    for i in range(n):
        for j in range(n):
            out.paste(tile, (i * tile.width, j * tile.width))
    return out


VARIANTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "photo": lambda im: im,
    "mirror": ImageOps.mirror,
    "crop": _crop,
    "crop_square": lambda im: _square(_crop(im)),
    "tile2": lambda im: _tile(_crop(im), 2),
}


def _colour(im: Image.Image, studio: bool) -> F32:
    """sqrt-normalised Lab 4x8x8 histogram (studio photos: their product mask only)."""
    import cv2

    bgr = np.asarray(im.convert("RGB").resize((128, 128)))[:, :, ::-1].copy()
    mask = white_background_mask(bgr[:, :, ::-1].copy()) if studio else None
    lab = cv2.cvtColor(bgr, cv2.COLOR_BGR2LAB)
    h = cv2.calcHist([lab], [0, 1, 2], mask, [4, 8, 8], [0, 256, 0, 256, 0, 256]).ravel()
    h = np.sqrt(h / max(float(h.sum()), 1.0))
    return (h / max(float(np.linalg.norm(h)), 1e-12)).astype(np.float32)


def embed_all(grocery: Path, cache: Path) -> dict[str, Any]:
    """``{name: (vectors, product_ids, colour)}``, cached under ``cache``."""
    cache.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=cache / "unused")
    embedder = load_embedder(settings)
    studio = read_csv(grocery / "catalog_studio.csv")
    sets = {
        "val": read_csv(grocery / "queries_val.csv"),
        "train": [r for r in read_csv(grocery / "catalog.csv") if "/iconic/" not in r["image"]],
        **{f"studio_{v}": studio for v in VARIANTS},
    }
    out: dict[str, Any] = {}
    for name, rows in sets.items():
        vec_path, col_path = cache / f"{name}.npy", cache / f"{name}_colour.npy"
        if not vec_path.is_file() or not col_path.is_file():
            variant = VARIANTS[name.removeprefix("studio_")] if name.startswith("studio_") else None
            vecs, cols = [], []
            for i in range(0, len(rows), 16):
                imgs = [
                    decode_image((grocery / r["image"]).read_bytes(), max_pixels=10**8)
                    for r in rows[i : i + 16]
                ]
                cols += [_colour(im, variant is not None) for im in imgs]
                if variant is not None:
                    imgs = [variant(im) for im in imgs]
                vecs.append(embedder.embed(imgs))
            np.save(vec_path, np.concatenate(vecs))
            np.save(col_path, np.stack(cols))
        out[name] = (np.load(vec_path), [r["product_id"] for r in rows], np.load(col_path))
    out["head_dims"] = embedder.head_dims
    return out


def _recall(sims: F32, catalog_pids: list[str], query_pids: list[str]) -> dict[str, float]:
    names = sorted(set(catalog_pids))
    idx = {n: i for i, n in enumerate(names)}
    codes = np.array([idx[p] for p in catalog_pids])
    scores = np.full((sims.shape[0], len(names)), -np.inf, np.float32)
    for j in range(len(names)):
        scores[:, j] = sims[:, codes == j].max(axis=1)
    return {k: round(v, 3) for k, v in recall_from_scores(scores, names, query_pids).items()}


def study(data: dict[str, Any]) -> list[dict[str, Any]]:
    head = int(data["head_dims"])

    def h(x: F32) -> F32:
        return l2n(x[:, :head])

    cat_pids = data["studio_photo"][1]
    cat = {v: h(data[f"studio_{v}"][0]) for v in VARIANTS}
    cat_colour = data["studio_photo"][2]
    rows: list[dict[str, Any]] = []

    def row(
        name: str,
        catalog: Callable[[], F32],
        query: Callable[[F32], F32] | None = None,
        colour_w: float = 0.0,
    ) -> None:
        out: dict[str, Any] = {"idea": name}
        c = catalog()
        for qname in ("train", "val"):
            qv, qp, qc = data[qname]
            q = query(h(qv)) if query else h(qv)
            sims = q @ c.T + colour_w * (qc @ cat_colour.T)
            out[qname] = _recall(sims.astype(np.float32), cat_pids, qp)
        rows.append(out)

    row("head-only fallback (baseline)", lambda: cat["photo"])
    row("catalog: mean of photo and mirror", lambda: l2n(cat["photo"] + cat["mirror"]))
    row("catalog: white-mask crop", lambda: cat["crop"])
    row("catalog: white-mask crop padded square", lambda: cat["crop_square"])
    row("catalog: crop tiled 2x2 (shelf)", lambda: cat["tile2"])
    m = cat["photo"].mean(axis=0)
    row(
        "centre on the catalog mean (w=0.5)",
        lambda: l2n(cat["photo"] - 0.5 * m),
        lambda q: l2n(q - 0.5 * m),
    )
    row("colour Lab 4x8x8 fused (w=0.1)", lambda: cat["photo"], colour_w=0.1)
    rows.append(_cross_fitted_lda(data, head))
    return rows


def _cross_fitted_lda(data: dict[str, Any], head: int) -> dict[str, Any]:
    """LDA learnt on the train + studio photos of half the products, measured on the
    val queries of the other half against (a) their own studio photos, (b) all 81."""
    sv, sp, _ = data["studio_photo"]
    tv, tp, _ = data["train"]
    vv, vp, _ = data["val"]
    products = sorted(set(sp))
    perm = np.random.default_rng(0).permutation(len(products))
    halves = [{products[i] for i in perm[:40]}, {products[i] for i in perm[40:]}]
    hits: dict[str, list[float]] = {"own_base": [], "own_lda": [], "all_base": [], "all_lda": []}
    for learn, measure in ((halves[0], halves[1]), (halves[1], halves[0])):
        ti = [i for i, p in enumerate(tp) if p in learn]
        si = [i for i, p in enumerate(sp) if p in learn]
        ad = fit_adaptation(
            np.concatenate([tv[ti], sv[si]]), [tp[i] for i in ti] + [sp[i] for i in si]
        )
        assert ad is not None
        qi = [i for i, p in enumerate(vp) if p in measure]
        qp = [vp[i] for i in qi]
        for scope, ci in (
            ("own", [i for i, p in enumerate(sp) if p in measure]),
            ("all", list(range(len(sp)))),
        ):
            cp = [sp[i] for i in ci]
            base = l2n(vv[qi, :head]) @ l2n(sv[ci, :head]).T
            lda = ad.apply(vv[qi]) @ ad.apply(sv[ci]).T
            for kind, sims in (("base", base), ("lda", lda)):
                r1 = _recall(sims.astype(np.float32), cp, qp)["R@1"]
                hits[f"{scope}_{kind}"].append(r1 * len(qi))
    n = len(vp)
    return {
        "idea": "cross-fitted LDA (learnt on half the products' train + studio photos)",
        "val_R@1": {k: round(sum(v) / n, 3) for k, v in hits.items()},
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Studio catalog: cheap ideas from cached embeddings (dev = train photos, val reported)",
        "",
        "| idea | dev R@1 | dev R@5 | val R@1 | val R@5 | val R@10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "train" in r:
            d, v = r["train"], r["val"]
            lines.append(
                f"| {r['idea']} | {d['R@1']} | {d['R@5']} | {v['R@1']} | {v['R@5']} | {v['R@10']} |"
            )
        else:
            x = r["val_R@1"]
            lines.append(
                f"| {r['idea']}: val R@1 on its unseen half, own catalog {x['own_base']} -> "
                f"{x['own_lda']}, all 81 studio photos {x['all_base']} -> {x['all_lda']} "
                "| | | | | |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--cache", type=Path, default=Path("/tmp/shoplens-bench/studio_ideas"))
    args = ap.parse_args()
    rows = study(embed_all(args.grocery, args.cache))
    md = markdown(rows)
    j, m = write_results("quality_studio_ideas", {"rows": rows, "machine": machine()}, md)
    print(md)
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
