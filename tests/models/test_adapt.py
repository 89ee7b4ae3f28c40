"""Catalog adaptation on synthetic products: it must help, round-trip, and fall back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shoplens.models.adapt import Adaptation, AdaptationError, fit_adaptation


def _l2n(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def _world(rng: np.random.Generator, n_products: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Product centres close together; nuisance variation strong along a few shared axes.

    That mimics photos: lighting / background move every product the same way,
    and those moves are larger than the gap between similar products.
    """
    return rng.normal(size=(n_products, dim)) * 0.35, rng.normal(size=(6, dim)) * 1.5


def _sample(
    world: tuple[np.ndarray, np.ndarray], per_product: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[str]]:
    centres, nuisance = world
    x, ids = [], []
    for p, centre in enumerate(centres):
        coeff = rng.normal(size=(per_product, len(nuisance)))
        noise = rng.normal(size=(per_product, centres.shape[1])) * 0.2
        x.append(centre + coeff @ nuisance + noise + 2.0)
        ids += [f"p{p}"] * per_product
    return _l2n(np.concatenate(x)), ids


def _products(
    rng: np.random.Generator, n_products: int, per_product: int, dim: int = 64
) -> tuple[np.ndarray, list[str]]:
    return _sample(_world(rng, n_products, dim), per_product, rng)


def _recall_at_1(q: np.ndarray, q_ids: list[str], c: np.ndarray, c_ids: list[str]) -> float:
    names = sorted(set(c_ids))
    cid = np.array([names.index(i) for i in c_ids])
    sims = q @ c.T
    per_product = np.stack([sims[:, cid == j].max(axis=1) for j in range(len(names))], axis=1)
    best = [names[j] for j in per_product.argmax(axis=1)]
    return float(np.mean([b == t for b, t in zip(best, q_ids, strict=True)]))


def test_adaptation_improves_recall_on_held_out_samples() -> None:
    world = _world(np.random.default_rng(0), 30, 64)
    catalog, c_ids = _sample(world, 12, np.random.default_rng(1))
    queries, q_ids = _sample(world, 5, np.random.default_rng(2))  # unseen samples
    plain = _recall_at_1(queries, q_ids, catalog, c_ids)
    ad = fit_adaptation(catalog, c_ids)
    assert ad is not None
    adapted = _recall_at_1(ad.apply(queries), q_ids, ad.apply(catalog), c_ids)
    assert adapted > plain + 0.1, (plain, adapted)
    assert ad.facts["n_products"] == 30
    assert ad.facts["n_images"] == 360


def test_apply_is_normalised_float32_and_checks_dimension() -> None:
    catalog, ids = _products(np.random.default_rng(2), 5, 6, dim=16)
    ad = fit_adaptation(catalog, ids, dim=8)
    assert ad is not None
    out = ad.apply(catalog)
    assert out.dtype == np.float32
    assert out.shape == (30, 8)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert ad.apply(catalog[0]).shape == (1, 8)
    with pytest.raises(AdaptationError):
        ad.apply(np.ones((2, 15), np.float32))


def test_save_load_round_trip(tmp_path: Path) -> None:
    catalog, ids = _products(np.random.default_rng(3), 6, 5, dim=32)
    ad = fit_adaptation(catalog, ids, shrinkage=0.3)
    assert ad is not None
    hashes = ad.save(tmp_path / "adapt")
    assert set(hashes) == {p.name for p in (tmp_path / "adapt").iterdir()}
    assert all(len(h) == 64 for h in hashes.values())
    back = Adaptation.load(tmp_path / "adapt")
    assert back.kind == ad.kind
    assert back.params == ad.params
    assert back.facts == ad.facts
    np.testing.assert_array_equal(back.apply(catalog), ad.apply(catalog))


def test_load_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(AdaptationError):
        Adaptation.load(tmp_path)


@pytest.mark.parametrize("per_product", [1])
def test_falls_back_with_one_image_per_product(per_product: int) -> None:
    catalog, ids = _products(np.random.default_rng(4), 10, per_product)
    assert fit_adaptation(catalog, ids) is None


def test_falls_back_with_a_single_product() -> None:
    catalog, ids = _products(np.random.default_rng(5), 1, 20)
    assert fit_adaptation(catalog, ids) is None


def test_rejects_bad_input() -> None:
    catalog, ids = _products(np.random.default_rng(6), 3, 4, dim=8)
    with pytest.raises(AdaptationError):
        fit_adaptation(catalog, ids[:-1])
    with pytest.raises(AdaptationError):
        fit_adaptation(catalog, ids, method="nope")
    with pytest.raises(AdaptationError):
        fit_adaptation(catalog, ids, shrinkage=1.5)


@pytest.mark.slow  # importing torch + timm alone takes 15-20 s on the shared CPU
def test_multi_layer_embedder_matches_the_studied_descriptor() -> None:
    torch = pytest.importorskip("torch")
    timm = pytest.importorskip("timm")
    from shoplens.models.pooling import MultiLayerEmbedder

    torch.manual_seed(0)
    backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    emb = MultiLayerEmbedder(backbone).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = emb(x).numpy()
        h = backbone.bn1(backbone.conv_stem(x))
        taps = {}
        for i, stage in enumerate(backbone.blocks):
            h = stage(h)
            taps[i] = h.mean(dim=(2, 3)).numpy()
        head = backbone.bn2(backbone.conv_head(h)).clamp(min=0).mean(dim=(2, 3)).numpy()
    want = _l2n(np.hstack([_l2n(head), _l2n(taps[5]), _l2n(taps[4])]))
    assert emb.dim == 1280 + 192 + 112 == out.shape[1]
    np.testing.assert_allclose(out, want, atol=1e-5)


def test_head_only_keeps_the_leading_dims_renormalised() -> None:
    from shoplens.models.adapt import head_only

    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 12)).astype(np.float32)
    out = head_only(12, 8).apply(x)
    expected = x[:, :8] / np.linalg.norm(x[:, :8], axis=1, keepdims=True)
    assert out.shape == (5, 8)
    assert np.allclose(out, expected, atol=1e-6)


def test_fewer_photos_than_dims_solves_in_their_span_with_the_same_result() -> None:
    """The small-catalog shortcut (QR onto the photos' span) is exact: the adapted
    geometry equals the full d x d solution's, and it still helps."""
    from shoplens.models import adapt

    world = _world(np.random.default_rng(3), 8, 300)
    catalog, c_ids = _sample(world, 6, np.random.default_rng(4))  # 48 photos < 300 dims
    queries, q_ids = _sample(world, 3, np.random.default_rng(5))
    names = sorted(set(c_ids))
    labels = np.array([names.index(i) for i in c_ids])
    x = catalog.astype(np.float64)
    kw = {"shrinkage": 0.3, "beta": 1.0, "dim": 7}
    fitted = adapt._fit_lda(x, labels, len(names), **kw)
    assert fitted is not None
    mean, span = fitted
    # The full path, forced by handing _lda_axes the raw coordinates.
    class_means = np.stack([x[labels == j].mean(axis=0) for j in range(len(names))])
    within = x - class_means[labels]
    tau = float((within**2).sum()) / len(x) / x.shape[1]
    full = adapt._lda_axes(within, class_means - mean, tau, 0.3, 1.0, 7)
    assert span.shape == full.shape == (300, 7)

    def geometry(m: np.ndarray) -> np.ndarray:
        z = (queries - mean) @ m
        z /= np.linalg.norm(z, axis=1, keepdims=True)
        c = (catalog - mean) @ m
        c /= np.linalg.norm(c, axis=1, keepdims=True)
        return z @ c.T  # axes may differ in sign; similarities may not

    assert np.allclose(geometry(span), geometry(full), atol=1e-6)
    ad = fit_adaptation(catalog, c_ids, dim=7)
    assert ad is not None
    plain = _recall_at_1(queries, q_ids, catalog, c_ids)
    assert _recall_at_1(ad.apply(queries), q_ids, ad.apply(catalog), c_ids) > plain


def test_asking_for_more_axes_than_photos_keeps_their_whole_span_exactly() -> None:
    """Ten photos of five products at 300-d with the default 32 output dims (more
    than the photos span): the fit stays in the span and keeps all of it. The
    catalog's geometry and every query's scores against it, before the query's
    normalisation, equal the full d x d solution's with all d axes kept (the full
    solution with only 32 is not unique: 28 of them would be arbitrary directions
    of its zero-eigenvalue space)."""
    from shoplens.models import adapt

    world = _world(np.random.default_rng(7), 5, 300)
    catalog, c_ids = _sample(world, 2, np.random.default_rng(8))
    queries, q_ids = _sample(world, 3, np.random.default_rng(9))
    names = sorted(set(c_ids))
    labels = np.array([names.index(i) for i in c_ids])
    x = catalog.astype(np.float64)
    fitted = adapt._fit_lda(x, labels, len(names), shrinkage=0.3, beta=1.0, dim=32)
    assert fitted is not None
    mean, span = fitted
    assert span.shape == (300, 9)  # ten centred photos span nine dimensions
    class_means = np.stack([x[labels == j].mean(axis=0) for j in range(len(names))])
    within = x - class_means[labels]
    tau = float((within**2).sum()) / len(x) / x.shape[1]
    full = adapt._lda_axes(within, class_means - mean, tau, 0.3, 1.0, 300)

    def scores(m: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return ((rows - mean) @ m) @ ((catalog - mean) @ m).T

    np.testing.assert_allclose(scores(span, catalog), scores(full, catalog), atol=1e-8)
    np.testing.assert_allclose(scores(span, queries), scores(full, queries), atol=1e-8)
    ad = fit_adaptation(catalog, c_ids)  # dim "auto": 32
    assert ad is not None and ad.dim_out == 9 and ad.facts["dim_out"] == 9
    assert np.isfinite(ad.matrix).all()
    plain = _recall_at_1(queries, q_ids, catalog, c_ids)
    assert _recall_at_1(ad.apply(queries), q_ids, ad.apply(catalog), c_ids) >= plain


def test_photos_that_are_all_the_same_teach_nothing() -> None:
    """One placeholder picture for every product: no fit (it used to be NaN)."""
    same = np.tile(_l2n(np.random.default_rng(10).normal(size=(1, 64))), (8, 1))
    assert fit_adaptation(same, [f"p{i % 4}" for i in range(8)]) is None
