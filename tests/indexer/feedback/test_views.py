"""Learning views of kept shopper photos (feedback/views.py): the histogram test
embedder (what is asserted does not depend on what it sees), real files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from shoplens.indexer.feedback.photos import drop_kept, kept_path, reencode, write_kept
from shoplens.indexer.feedback.views import VIEWS, crops, view_vectors, views_dir
from shoplens.indexer.ops.learn import ShopperExamples
from tests.indexer.helpers import HistEmbedder


class CountingEmbedder(HistEmbedder):
    """The histogram embedder, counting the photos it embeds."""

    def __init__(self) -> None:
        super().__init__()
        self.embedded = 0

    def embed(self, images: Sequence[Image.Image]) -> np.ndarray:  # type: ignore[type-arg]
        self.embedded += len(images)
        return super().embed(images)


def _photo(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))


def test_the_views_are_the_centre_and_two_corners() -> None:
    im = Image.new("RGB", (200, 100))
    sizes = [c.size for c in crops(im)]
    assert sizes == [(160, 80), (150, 75), (150, 75)]
    assert len(VIEWS) == 3


def test_views_are_embedded_once_and_cached_then_deleted_with_the_photo(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    for i in range(3):
        write_kept(tmp_path, f"ph{i}", reencode(_photo(i)))
    first = view_vectors(tmp_path, emb, ["ph0", "ph1", "ph2", "gone"])
    assert emb.embedded == 9  # three views of each photo that exists
    assert first[3] is None
    for v in first[:3]:
        assert v is not None and v.shape == (3, emb.dim)
    # The views differ from one another (they are crops, not copies).
    assert first[0] is not None and not np.allclose(first[0][0], first[0][1])
    again = view_vectors(tmp_path, emb, ["ph0", "ph1", "ph2"])
    assert emb.embedded == 9  # read from the cache
    for a, b in zip(first[:3], again, strict=True):
        np.testing.assert_array_equal(a, b)  # type: ignore[arg-type]
    drop_kept(tmp_path, "ph1")
    assert not kept_path(tmp_path, "ph1").exists()
    assert not (views_dir(tmp_path, emb.name) / "ph1.npy").exists()
    assert (views_dir(tmp_path, emb.name) / "ph0.npy").exists()


def test_a_torn_cache_file_is_embedded_again(tmp_path: Path) -> None:
    emb = CountingEmbedder()
    write_kept(tmp_path, "ph", reencode(_photo(7)))
    good = view_vectors(tmp_path, emb, ["ph"])[0]
    (views_dir(tmp_path, emb.name) / "ph.npy").write_bytes(b"\x93NUMPY torn")
    again = view_vectors(tmp_path, emb, ["ph"])[0]
    assert emb.embedded == 6
    np.testing.assert_array_equal(good, again)  # type: ignore[arg-type]


def test_learning_samples_carry_their_photo_s_product() -> None:
    vectors = np.eye(4, dtype=np.float32)[:2]
    plain = ShopperExamples(["a", "b"], ["p1", "p2"], vectors, 0, 0)
    assert plain.learn_also() is not None and list(plain.learn_also()[1]) == ["p1", "p2"]  # type: ignore[index]
    views = np.ones((6, 4), np.float32)
    both = ShopperExamples(
        ["a", "b"], ["p1", "p2"], vectors, 0, 0, views, ("p1",) * 3 + ("p2",) * 3
    )
    x, ids = both.learn_also()  # type: ignore[misc]
    assert x.shape == (8, 4) and list(ids) == ["p1", "p2", "p1", "p1", "p1", "p2", "p2", "p2"]
    assert ShopperExamples([], [], np.zeros((0, 4), np.float32), 0, 0).learn_also() is None
