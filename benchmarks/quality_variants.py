"""Retrieval-quality variants on the grocery val queries, from cached feature maps.

    python -m benchmarks.quality_features   # once: backbone maps -> /tmp cache
    python -m benchmarks.quality_variants [--grocery ../shared/data/grocery]

Writes ``benchmarks/results/quality_variants.json`` and the table inside
``benchmarks/results/quality.md`` (between the ``<!-- table -->`` markers).
Metric: product-level Recall@K (max over a product's catalog images) of the
296 val queries against the 2,721-image catalog. Hyperparameters of the
adaptation are chosen on a catalog split (:func:`catalog_split`), never on
the queries; rows marked ``(val-picked)`` are shown only to bound what tuning
on the queries would add.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality_common import (
    F32,
    Labels,
    avg,
    catalog_split,
    gem,
    l2n,
    load_labels,
    recall,
    rmac,
)
from benchmarks.quality_features import DEFAULT_CACHE, DEFAULT_GROCERY
from shoplens.models.adapt import Adaptation, fit_adaptation

RESULTS = Path(__file__).resolve().parent / "results"
FORWARD = "+1 forward pass"


@dataclass
class Row:
    variant: str
    group: str
    r1: float
    r5: float
    r10: float
    query_extra_ms: float  # descriptor + adaptation + search, minus the plain baseline's
    query_note: str
    index_mb: float
    fit_s: float
    split_r1: float | None = None
    note: str = ""


class Study:
    def __init__(self, grocery: Path, cache: Path) -> None:
        self.labels: Labels = load_labels(grocery)
        self.dir = cache / "lite0"
        self.cp = self.labels.catalog_products
        self.cpa = np.array(self.cp)
        self.qp = self.labels.query_products
        self.fit_idx, self.held_idx = catalog_split(self.labels)
        self.rows: list[Row] = []
        self._maps: dict[str, np.ndarray] = {}
        self.base_ms = 0.0

    def has(self, name: str) -> bool:
        return (self.dir / f"{name}.npy").exists()

    def m(self, name: str) -> np.ndarray:
        if name not in self._maps:
            self._maps[name] = np.load(self.dir / f"{name}.npy")
        return self._maps[name]

    # ------------------------------------------------------------ timing

    def query_ms(
        self, pool: Callable[[np.ndarray], F32], index: F32, ad: Adaptation | None
    ) -> float:
        """Per-query ms: pool one map, adapt, score every catalog image, product max."""
        fmap = self.m("queries_val_final")[:1].astype(np.float32)
        # Catalog sorted by product once, so the per-product max is one reduceat.
        order = np.argsort(self.cpa, kind="stable")
        starts = np.flatnonzero(np.r_[True, self.cpa[order][1:] != self.cpa[order][:-1]])
        sorted_index = np.ascontiguousarray(index[order])
        times = []
        for _ in range(30):
            t0 = time.perf_counter()
            v = l2n(pool(fmap))
            if ad is not None:
                v = ad.apply(v)
            best = np.maximum.reduceat(sorted_index @ v[0], starts)
            np.argpartition(-best, 10)[:10]
            times.append(time.perf_counter() - t0)
        return 1000 * float(np.median(times))

    # ------------------------------------------------------------ rows

    def add(
        self,
        variant: str,
        group: str,
        c: F32,
        q: F32,
        *,
        pool: Callable[[np.ndarray], F32] | None = None,
        ad: Adaptation | None = None,
        fit_s: float = 0.0,
        split_r1: float | None = None,
        query_note: str = "",
        note: str = "",
        catalog_ids: list[str] | None = None,
    ) -> Row:
        c, q = l2n(c), l2n(q)
        r = recall(q, c, catalog_ids or self.cp, self.qp)
        ms = self.query_ms(pool, c, ad) - self.base_ms if pool is not None else 0.0
        row = Row(
            variant,
            group,
            r["R@1"],
            r["R@5"],
            r["R@10"],
            round(ms, 3),
            query_note,
            round(c.nbytes / 2**20, 2),
            round(fit_s, 2),
            split_r1,
            note,
        )
        self.rows.append(row)
        print(
            f"{variant:52s} R@1 {row.r1:.3f} R@5 {row.r5:.3f} R@10 {row.r10:.3f} "
            f"+{row.query_extra_ms:.2f}ms {row.index_mb}MB fit {row.fit_s}s split {split_r1}",
            flush=True,
        )
        return row

    def split_r1(self, c: F32, **kw: Any) -> float:
        """R@1 of held-out catalog photos against the rest, adaptation fit on the rest."""
        f, h = self.fit_idx, self.held_idx
        c = l2n(c)
        ad = fit_adaptation(c[f], list(self.cpa[f]), **kw)
        cf, ch = (c[f], c[h]) if ad is None else (ad.apply(c[f]), ad.apply(c[h]))
        return recall(ch, cf, list(self.cpa[f]), list(self.cpa[h]))["R@1"]

    def adapted(
        self,
        variant: str,
        c: F32,
        q: F32,
        pool: Callable[[np.ndarray], F32],
        params: dict[str, Any],
        *,
        extra: F32 | None = None,
        extra_ids: list[str] | None = None,
        with_split: bool = True,
        note: str = "",
    ) -> Row:
        kw = params
        c = l2n(c)
        fit_x = c if extra is None else np.vstack([c, l2n(extra)])
        fit_ids = self.cp + (extra_ids or [])
        t0 = time.perf_counter()
        ad = fit_adaptation(fit_x, fit_ids, **kw)
        fit_s = time.perf_counter() - t0
        assert ad is not None
        s = self.split_r1(c, **kw) if with_split else None
        return self.add(
            variant,
            "adaptation",
            ad.apply(c),
            ad.apply(q),
            pool=pool,
            ad=ad,
            fit_s=fit_s,
            split_r1=s,
            note=note,
        )


def run(grocery: Path, cache: Path) -> list[Row]:
    st = Study(grocery, cache)
    cf, qf = st.m("catalog_final"), st.m("queries_val_final")
    base_c, base_q = avg(cf), avg(qf)
    st.base_ms = st.query_ms(avg, l2n(base_c), None)
    print(f"baseline descriptor+search {st.base_ms:.3f} ms/query")

    # 1-2. descriptors from the same network
    st.add("avg pool (baseline)", "descriptor", base_c, base_q, pool=avg)
    for p in (2.0, 3.0, 4.0):

        def gem_p(f: np.ndarray, p: float = p) -> F32:
            return gem(f, p)

        st.add(f"GeM p={p:g}", "descriptor", gem(cf, p), gem(qf, p), pool=gem_p)

    def mx(f: np.ndarray) -> F32:
        out: F32 = f.astype(np.float32).max(axis=(2, 3))
        return out

    st.add("max pool (MAC)", "descriptor", mx(cf), mx(qf), pool=mx)
    st.add("R-MAC (3 levels)", "descriptor", rmac(cf), rmac(qf), pool=rmac)

    def stage(name: str, x: str) -> F32:
        return l2n(st.m(f"{name}_{x}").astype(np.float32).mean(axis=(2, 3)))

    ml_c = np.hstack([l2n(base_c), stage("catalog", "s5"), stage("catalog", "s4")])
    ml_q = np.hstack([l2n(base_q), stage("queries_val", "s5"), stage("queries_val", "s4")])

    def ml_pool(f: np.ndarray) -> F32:  # cost proxy: the s4/s5 maps are pooled the same way
        a = avg(f)
        return np.hstack([a, a[:, : ml_c.shape[1] - a.shape[1]]])

    st.add("multi-layer avg(final)+avg(s5)+avg(s4)", "descriptor", ml_c, ml_q, pool=ml_pool)
    fq = st.m("queries_val_flip_final")
    st.add(
        "flip TTA, query only (avg)",
        "descriptor",
        base_c,
        l2n(base_q) + l2n(avg(fq)),
        pool=avg,
        query_note=FORWARD,
    )
    if st.has("catalog_flip_final"):
        fc = st.m("catalog_flip_final")
        st.add(
            "flip TTA, catalog only (avg)",
            "descriptor",
            l2n(base_c) + l2n(avg(fc)),
            base_q,
            pool=avg,
            note="2x catalog inference",
        )
        st.add(
            "flip TTA, catalog + query (avg)",
            "descriptor",
            l2n(base_c) + l2n(avg(fc)),
            l2n(base_q) + l2n(avg(fq)),
            pool=avg,
            query_note=FORWARD,
        )

    # 3. catalog adaptation (hyperparameters picked on the catalog split)
    grid = [{"shrinkage": sh, "dim": dim} for sh in (0.05, 0.1, 0.3) for dim in (None, 256, 80, 64)]
    scored = [(st.split_r1(base_c, **kw), kw) for kw in grid]
    for s, kw in scored:
        print("split", kw, round(s, 3), flush=True)
    best_kw: dict[str, Any] = max(scored, key=lambda t: t[0])[1]
    for params in grid:
        tag = " (split-picked)" if params == best_kw else ""
        name = f"LDA avg shrink={params['shrinkage']} dim={params['dim']}{tag}"
        st.adapted(name, base_c, base_q, avg, params)

    def gem3(f: np.ndarray) -> F32:
        return gem(f, 3.0)

    st.adapted(f"LDA GeM3 {best_kw}", gem(cf, 3), gem(qf, 3), gem3, best_kw)
    st.adapted(f"LDA multi-layer {best_kw}", ml_c, ml_q, ml_pool, best_kw)
    st.adapted(
        "LDA avg beta=0.5 (partial whitening)", base_c, base_q, avg, {**best_kw, "beta": 0.5}
    )
    if st.has("catalog_flip_final"):
        st.adapted(
            f"LDA avg {best_kw}, fit on catalog + flipped copies",
            base_c,
            base_q,
            avg,
            best_kw,
            extra=avg(st.m("catalog_flip_final")),
            extra_ids=list(st.cp),
            with_split=False,
            note="2x catalog inference",
        )
    aug = sorted(p.stem[: -len("_avg")] for p in st.dir.glob("catalog_aug*_avg.npy"))
    if aug:
        st.adapted(
            f"LDA avg {best_kw}, fit on catalog + {len(aug)} augmented copies",
            base_c,
            base_q,
            avg,
            best_kw,
            extra=np.vstack([st.m(f"{a}_avg") for a in aug]),
            extra_ids=list(st.cp) * len(aug),
            with_split=False,
            note=f"{1 + len(aug)}x catalog inference",
        )

    # 4. re-ranking / index-side tricks on top of the adapted vectors
    ad = fit_adaptation(l2n(base_c), st.cp, **best_kw)
    assert ad is not None
    a_c, a_q = ad.apply(base_c), ad.apply(base_q)
    for k in (3, 10):
        sims = a_q @ a_c.T
        top = np.argsort(-sims, axis=1)[:, :k]
        w = np.take_along_axis(sims, top, 1).clip(0) ** 3
        st.add(
            f"LDA + alpha-QE (k={k}, alpha=3)",
            "re-ranking",
            a_c,
            a_q + (w[:, :, None] * a_c[top]).sum(1),
            query_note="+1 search",
        )
    names = sorted(set(st.cp))
    lab = np.searchsorted(names, st.cpa)
    means = np.zeros((len(names), a_c.shape[1]), np.float32)
    np.add.at(means, lab, a_c)
    for lam in (1.0, 3.0):
        st.add(
            f"LDA + pull catalog vectors to their product mean (lambda={lam})",
            "re-ranking",
            a_c + lam * l2n(means)[lab],
            a_q,
            note="index-side, needs ids at apply",
        )
    sims = a_c @ a_c.T
    sims[lab[:, None] != lab[None, :]] = -9.0
    top = np.argsort(-sims, axis=1)[:, :5]
    st.add("LDA + same-product DBA (k=5)", "re-ranking", a_c[top].mean(1), a_q)

    # one photo per product: the iconic images alone (adaptation falls back)
    ic = st.labels.iconic
    ic_ids = list(st.cpa[ic])
    fallback = fit_adaptation(l2n(base_c[ic]), ic_ids, **best_kw)
    st.add(
        "iconic only (81 images): plain avg; fit_adaptation -> "
        + ("None (fallback)" if fallback is None else "fitted"),
        "one photo per product",
        base_c[ic],
        base_q,
        catalog_ids=ic_ids,
    )
    iaug = sorted(st.dir.glob("iconic_aug*_avg.npy"))
    if iaug:
        # Can augmented copies of the single photo stand in for a product's photos?
        ia = np.vstack([l2n(base_c[ic])] + [l2n(np.load(p)) for p in iaug])
        one_photo: list[dict[str, Any]] = [best_kw, {**best_kw, "shrinkage": 0.5}]
        for p1 in one_photo:
            t0 = time.perf_counter()
            ad1 = fit_adaptation(ia, ic_ids * (1 + len(iaug)), **p1)
            fit_s = time.perf_counter() - t0
            assert ad1 is not None
            st.add(
                f"iconic only + LDA {p1} fit on it + {len(iaug)} augmented copies",
                "one photo per product",
                ad1.apply(base_c[ic]),
                ad1.apply(base_q),
                fit_s=fit_s,
                note=f"{1 + len(iaug)}x catalog inference",
                catalog_ids=ic_ids,
            )
    return st.rows


def write(rows: list[Row], out: Path) -> None:
    """quality_variants.json, then the table in quality.md (+ fine-tune rows if present)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality_variants.json").write_text(
        json.dumps([asdict(r) for r in rows], indent=2) + "\n"
    )
    finetune = out / "quality_finetune.json"
    if finetune.exists():
        rows = rows + [Row(**r) for r in json.loads(finetune.read_text())]
    lines = [
        "| variant | R@1 | R@5 | R@10 | query extra ms | index MB | fit s | catalog-split R@1 |",
        "|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for r in rows:
        q = f"{r.query_extra_ms:.2f}" + (f" {r.query_note}" if r.query_note else "")
        s = "" if r.split_r1 is None else f"{r.split_r1:.3f}"
        name = r.variant + (f" ({r.note})" if r.note else "")
        lines.append(
            f"| {name} | {r.r1:.3f} | {r.r5:.3f} | {r.r10:.3f} | {q} | {r.index_mb:.1f} "
            f"| {r.fit_s:.2f} | {s} |"
        )
    table = "\n".join(lines)
    md = out / "quality.md"
    text = md.read_text() if md.exists() else "<!-- table -->\n<!-- /table -->\n"
    a, b = text.index("<!-- table -->"), text.index("<!-- /table -->")
    md.write_text(text[: a + len("<!-- table -->")] + "\n" + table + "\n" + text[b:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument(
        "--table-only",
        action="store_true",
        help="rebuild quality.md from the stored quality_variants.json (no recomputation)",
    )
    args = ap.parse_args()
    if args.table_only:
        stored = json.loads((RESULTS / "quality_variants.json").read_text())
        write([Row(**r) for r in stored], RESULTS)
    else:
        write(run(args.grocery, args.cache), RESULTS)


if __name__ == "__main__":
    main()
