"""VectorIndex on real FAISS with small synthetic clustered vectors."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
from numpy.typing import NDArray

from shoplens.errors import BadParameter, NotFound, SnapshotError
from shoplens.indexer.vectors.index import VectorIndex
from shoplens.indexer.vectors.plan import AnnParams
from shoplens.indexer.vectors.rows import f16_bits_to_f32

DIM = 64
Data = tuple[NDArray[np.float32], NDArray[np.int64], NDArray[np.float32]]


@pytest.fixture(scope="module", autouse=True)
def one_omp_thread() -> Iterator[None]:
    """One OpenMP thread: on a shared 2-core box, spinning OpenMP barriers make
    k-means many times slower whenever another process holds a core."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def clustered(n: int, dim: int = DIM, *, clusters: int = 200, seed: int = 0) -> NDArray[np.float32]:
    """Normalised points around random centres with a low-rank spread plus noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    basis = rng.standard_normal((clusters, 4, dim)).astype(np.float32) * 0.4
    label = rng.integers(0, clusters, n)
    coef = rng.standard_normal((n, 4)).astype(np.float32)
    x = centres[label] + np.einsum("nr,nrd->nd", coef, basis[label])
    x += 0.3 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    out: NDArray[np.float32] = x.astype(np.float32)
    return out


def brute(
    x: NDArray[np.float32], ids: NDArray[np.int64], q: NDArray[np.float32], k: int
) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
    s = q @ x.T
    top = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, top, 1), ids[top]


def recall(found: NDArray[np.int64], truth: NDArray[np.int64]) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


@pytest.fixture(scope="module")
def data() -> Data:
    x = clustered(20_000 + 200, seed=1)
    # Shuffled, sparse caller ids: catches any row/id mix-up.
    ids = np.random.default_rng(2).permutation(10**6)[:20_000].astype(np.int64) * 7
    return x[:20_000], ids, x[20_000:]


@pytest.fixture(scope="module")
def ann(data: Data) -> VectorIndex:
    x, ids, _ = data
    return VectorIndex.build(x, ids, exact_max=1000, memory_budget_mb=1500)


@pytest.fixture(scope="module")
def ann_disk(data: Data, tmp_path_factory: pytest.TempPathFactory) -> VectorIndex:
    x, ids, _ = data
    params = AnnParams(rerank_store="disk-f16")
    scratch = tmp_path_factory.mktemp("scratch")
    idx = VectorIndex.build(
        x, ids, exact_max=1000, memory_budget_mb=1500, params=params, scratch_dir=scratch
    )
    assert not list(scratch.iterdir())  # the store's file is unlinked at once
    return idx


def test_exact_equals_numpy(data: Data) -> None:
    x, ids, q = data
    idx = VectorIndex.build(x[:5000], ids[:5000], exact_max=50_000, memory_budget_mb=1500)
    assert idx.facts["type"] == "flat-ip" and idx.ntotal == 5000 and idx.dim == DIM
    s, i = idx.search(q, 10)
    es, ei = brute(x[:5000], ids[:5000], q, 10)
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_allclose(s, es, atol=1e-5)
    keep = np.arange(0, 5000, 100)  # 1%: the flat index scans with a selector
    s, i = idx.search(q, 10, allowed_ids=ids[keep])
    es, ei = brute(x[keep], ids[keep], q, 10)
    np.testing.assert_array_equal(i, ei)
    np.testing.assert_allclose(s, es, atol=1e-5)


@pytest.mark.parametrize("fixture", ["ann", "ann_disk"])
def test_ann_recall_and_exact_scores(
    fixture: str,
    request: pytest.FixtureRequest,
    data: Data,
) -> None:
    x, ids, q = data
    idx: VectorIndex = request.getfixturevalue(fixture)
    assert idx.facts["type"] == "ivf-pq-fastscan+rerank"
    s, i = idx.search(q, 10)
    _, ei = brute(x, ids, q, 10)
    assert recall(i, ei) >= 0.95
    # Scores are recomputed from the stored vectors, not PQ estimates.
    row = {int(v): r for r, v in enumerate(ids)}
    exact = np.einsum("mkd,md->mk", x[[[row[int(v)] for v in line] for line in i]], q)
    tol = 1e-5 if fixture == "ann" else 2e-3  # float16 store
    np.testing.assert_allclose(s, exact, atol=tol)
    assert np.all(np.diff(s, axis=1) <= 1e-7)


@pytest.mark.parametrize("fixture", ["ann", "ann_disk"])
def test_selective_filter_returns_k_exact(
    fixture: str,
    request: pytest.FixtureRequest,
    data: Data,
) -> None:
    x, ids, q = data
    idx: VectorIndex = request.getfixturevalue(fixture)
    keep = np.random.default_rng(3).choice(len(ids), 200, replace=False)  # 1%
    assert len(keep) <= idx.facts["brute_force_max"]
    s, i = idx.search(q, 10, allowed_ids=ids[keep])
    assert (i >= 0).all() and np.isin(i, ids[keep]).all()
    es, ei = brute(x[keep], ids[keep], q, 10)
    if fixture == "ann":  # float16 rounding may swap near-ties in the disk store
        np.testing.assert_array_equal(i, ei)
    np.testing.assert_allclose(s, es, atol=1e-5 if fixture == "ann" else 2e-3)


def test_pca_option(data: Data) -> None:
    x, ids, q = data
    params = AnnParams(pca_dim=32)
    idx = VectorIndex.build(x, ids, exact_max=1000, memory_budget_mb=1500, params=params)
    assert idx.facts["params"]["pca_dim"] == 32 and idx.dim == DIM
    _, i = idx.search(q, 10)
    _, ei = brute(x, ids, q, 10)
    assert recall(i, ei) >= 0.9
    _, i = idx.search(q, 10, allowed_ids=ids[::2])
    assert np.isin(i, ids[::2]).all()


def test_large_filter_uses_ann_and_still_returns_k(ann: VectorIndex, data: Data) -> None:
    x, ids, q = data
    # Above the brute-force threshold, so the IVF scan with a selector runs;
    # every other id, so the probed lists hold plenty.
    for keep in (np.arange(0, len(ids), 2), np.arange(0, len(ids), 7)):  # 50%, 14%
        assert len(keep) > ann.facts["brute_force_max"]
        _, i = ann.search(q, 10, allowed_ids=ids[keep])
        assert (i >= 0).all() and np.isin(i, ids[keep]).all()
        _, ei = brute(x[keep], ids[keep], q, 10)
        assert recall(i, ei) >= 0.95


def test_filter_with_unknown_and_few_ids_pads(ann: VectorIndex, data: Data) -> None:
    _, ids, q = data
    allowed = np.array([ids[5], ids[9], -3, 10**12], dtype=np.int64)
    s, i = ann.search(q[:2], 5, allowed_ids=allowed)
    assert set(i[0, :2]) == {ids[5], ids[9]}
    assert (i[:, 2:] == -1).all() and np.isneginf(s[:, 2:]).all()
    s, i = ann.search(q[:2], 5, allowed_ids=np.array([], dtype=np.int64))
    assert (i == -1).all()


def test_padding_when_fewer_than_k(data: Data) -> None:
    x, ids, q = data
    # Fewer vectors than an ANN index can be trained on: exact, whatever exact_max says.
    idx = VectorIndex.build(x[:3], ids[:3], exact_max=0, memory_budget_mb=1500)
    assert idx.facts["type"] == "flat-ip"
    s, i = idx.search(q[:4], 5)
    assert i.shape == (4, 5) and s.shape == (4, 5)
    assert (np.sort(i[:, :3], axis=1) == np.sort(ids[:3])).all()
    assert (i[:, 3:] == -1).all() and np.isneginf(s[:, 3:]).all()


def test_empty_index(tmp_path: Path) -> None:
    idx = VectorIndex.build(
        np.zeros((0, DIM), np.float32), np.zeros(0, np.int64), exact_max=10, memory_budget_mb=10
    )
    assert idx.ntotal == 0 and idx.dim == DIM
    s, i = idx.search(np.ones((2, DIM), np.float32), 3)
    assert (i == -1).all() and s.shape == (2, 3)
    idx.save(tmp_path)
    assert VectorIndex.load(tmp_path).ntotal == 0


def test_reconstruct(ann_disk: VectorIndex, data: Data) -> None:
    x, ids, _ = data
    np.testing.assert_allclose(ann_disk.reconstruct(ids[[7, 3]]), x[[7, 3]], atol=1e-3)
    with pytest.raises(NotFound):
        ann_disk.reconstruct(np.array([-5]))


@pytest.mark.parametrize("fixture", ["ann", "ann_disk"])
def test_save_load_round_trip(
    fixture: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    data: Data,
) -> None:
    _, ids, q = data
    idx: VectorIndex = request.getfixturevalue(fixture)
    written = idx.save(tmp_path)
    assert set(written) == {p.name for p in tmp_path.iterdir()}
    back = VectorIndex.load(tmp_path)
    for allowed in (None, ids[::100]):
        a = idx.search(q, 10, allowed_ids=allowed)
        b = back.search(q, 10, allowed_ids=allowed)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    assert back.facts["type"] == idx.facts["type"]


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_corrupt_files_raise_snapshot_error(
    damage: str, tmp_path: Path, ann_disk: VectorIndex
) -> None:
    written = ann_disk.save(tmp_path)
    assert len(written) == 4  # faiss index, ids, float16 store, manifest
    for name in written:
        d = tmp_path / name
        good = d.read_bytes()
        if damage == "truncate":
            d.write_bytes(good[: len(good) // 2])
        elif damage == "flip":
            bad = bytearray(good)
            bad[len(bad) // 2] ^= 0x10
            d.write_bytes(bytes(bad))
        else:
            d.unlink()
        with pytest.raises(SnapshotError):
            VectorIndex.load(tmp_path)
        d.write_bytes(good)
    VectorIndex.load(tmp_path)


def test_concurrent_searches_agree(ann_disk: VectorIndex, data: Data) -> None:
    _, ids, q = data
    allowed = [None, ids[::100], ids[::2]]
    want = [ann_disk.search(q[j : j + 1], 10, allowed[j % 3]) for j in range(len(q))]

    def one(j: int) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        return ann_disk.search(q[j : j + 1], 10, allowed[j % 3])

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(one, list(range(len(q))) * 3))
    for j, (s, i) in enumerate(got):
        np.testing.assert_array_equal(i, want[j % len(q)][1])
        np.testing.assert_array_equal(s, want[j % len(q)][0])


def test_bad_input(ann: VectorIndex) -> None:
    with pytest.raises(BadParameter):
        ann.search(np.ones((1, DIM + 1), np.float32), 3)
    with pytest.raises(BadParameter):
        ann.search(np.ones((1, DIM), np.float32), 0)
    with pytest.raises(BadParameter):
        VectorIndex.build(
            np.ones((2, 4), np.float32), np.array([1, 1]), exact_max=9, memory_budget_mb=9
        )


def test_float16_decode_is_exact() -> None:
    bits = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
    finite = np.isfinite(bits.view(np.float16))
    want = bits[finite].view(np.float16).astype(np.float32)
    np.testing.assert_array_equal(f16_bits_to_f32(bits[finite]), want)


def test_dense_ids_lookup_matches_sparse(data: Data) -> None:
    """Dense ids use a direct id -> row table, sparse ids binary search: same answers."""
    x, _, q = data
    dense = np.random.default_rng(4).permutation(3000).astype(np.int64)
    sparse = dense * 10**9
    a = VectorIndex.build(x[:3000], dense, exact_max=10_000, memory_budget_mb=100)
    b = VectorIndex.build(x[:3000], sparse, exact_max=10_000, memory_budget_mb=100)
    allowed = np.array([5, 17, 17, 2999, 3000, -1, 123456], dtype=np.int64)
    sa, ia = a.search(q, 4, allowed_ids=allowed)
    sb, ib = b.search(q, 4, allowed_ids=np.where(allowed >= 0, allowed * 10**9, -1))
    np.testing.assert_array_equal(sa, sb)
    np.testing.assert_array_equal(np.where(ia >= 0, ia * 10**9, -1), ib)
    assert set(ia[0, :3]) == {5, 17, 2999} and ia[0, 3] == -1
    np.testing.assert_array_equal(a.reconstruct(dense[:5]), b.reconstruct(sparse[:5]))
    with pytest.raises(NotFound):
        a.reconstruct(np.array([3000]))
