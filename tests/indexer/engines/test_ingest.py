"""The one ingest step: reject reasons by reference, and the upload variant."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from shoplens.config import Settings
from shoplens.errors import InvalidImage, TooLarge, UnsupportedMedia
from shoplens.indexer.catalog.photos import photo_path
from shoplens.indexer.catalog.store import CatalogStore
from shoplens.indexer.engines.ingest import (
    REMOTE_UNSUPPORTED,
    Ingest,
    LocalFile,
    Prepared,
    Read,
    Rejected,
    Unchanged,
    ingest_upload,
    worker_reason,
)
from shoplens.indexer.sources.manifest import ImageRef
from shoplens.models.decode import decode_image
from tests.indexer.helpers import HistEmbedder, image_bytes


def _ref(line: int, source: str, path: Path | None = None, url: str | None = None) -> ImageRef:
    return ImageRef(line=line, product_id=f"p{line}", source=source, path=path, url=url)


def _fetch_missing(url: str) -> bytes:
    raise OSError(f"HTTP 404 for {url}")


def test_each_bad_reference_gets_its_reason(tmp_path: Path, hist: HistEmbedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_image_bytes=2000)
    (tmp_path / "big.jpg").write_bytes(b"x" * 2001)
    (tmp_path / "dir.jpg").mkdir()
    (tmp_path / "html.jpg").write_bytes(b"<!doctype html><html>gone</html>")
    with CatalogStore(settings.db_path) as store:
        ingest = Ingest(settings, store, hist, set(), None)
        fetching = Ingest(settings, store, hist, set(), _fetch_missing)
        reasons = {
            "url": ingest(_ref(2, "http://x/1.jpg", url="http://x/1.jpg")),
            "fetch": fetching(_ref(3, "http://x/2.jpg", url="http://x/2.jpg")),
            "missing": ingest(_ref(4, "gone.jpg", tmp_path / "gone.jpg")),
            "dir": ingest(_ref(5, "dir.jpg", tmp_path / "dir.jpg")),
            "big": ingest(_ref(6, "big.jpg", tmp_path / "big.jpg")),
            "html": ingest(_ref(7, "html.jpg", tmp_path / "html.jpg")),
            "nowhere": ingest(_ref(8, "nowhere")),
        }
    assert all(isinstance(r, Rejected) for r in reasons.values())
    text = {k: r.reason for k, r in reasons.items() if isinstance(r, Rejected)}
    assert text["url"] == REMOTE_UNSUPPORTED
    assert text["fetch"] == "cannot fetch http://x/2.jpg: HTTP 404 for http://x/2.jpg"
    assert text["missing"] == "image file not found: gone.jpg"
    assert text["dir"] == "image dir.jpg is not a file"
    assert text["big"] == "image is 2001 bytes, more than the limit of 2000"
    assert text["html"].startswith("image html.jpg: unsupported image type")
    assert text["nowhere"] == "image nowhere is neither a file nor a URL"


def test_a_good_file_is_prepared_then_known_by_its_stat(tmp_path: Path, hist: HistEmbedder) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    data = image_bytes(3, size=300)
    (tmp_path / "a.jpg").write_bytes(data)
    ref = _ref(2, "a.jpg", tmp_path / "a.jpg")
    sha = hashlib.sha256(data).hexdigest()
    with CatalogStore(settings.db_path) as store:
        embedded: set[str] = set()
        ingest = Ingest(settings, store, hist, embedded, None)
        located = ingest.locate(ref)
        assert isinstance(located, LocalFile) and located.size == len(data)
        read = ingest.read(ref)
        assert isinstance(read, Read) and read.sha256 == sha and read.data == data
        out = ingest(ref)
        assert isinstance(out, Prepared) and out.sha256 == sha
        assert out.source_row is not None and out.source_row[3] == sha
        assert photo_path(settings.data_dir, sha).is_file()
        image = decode_image(data, draft_size=hist.preprocess_config.resize)
        np.testing.assert_array_equal(out.array, hist.prepare(image))

        # Once embedded: unchanged from the bytes, then from the stat cache alone.
        embedded.add(sha)
        again = ingest(ref)
        assert isinstance(again, Unchanged) and again.source_row == out.source_row
        store.put_sources([out.source_row])
        assert ingest.locate(ref) == Unchanged(sha, None)

        # Embedded but its photo lost: the photo is stored again, nothing to embed.
        photo_path(settings.data_dir, sha).unlink()
        os.utime(tmp_path / "a.jpg", ns=(1, 1))  # the stat cache no longer matches
        assert ingest(ref) == Unchanged(sha, (str(tmp_path / "a.jpg"), len(data), 1, sha))
        assert photo_path(settings.data_dir, sha).is_file()


def test_upload_stores_the_photo_and_prepares_from_the_full_decode(
    tmp_path: Path, hist: HistEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    data = image_bytes(5, size=200)
    sha, array = ingest_upload(settings, data, 1, hist)
    assert sha == hashlib.sha256(data).hexdigest()
    assert photo_path(settings.data_dir, sha).is_file()
    np.testing.assert_array_equal(array, hist.prepare(decode_image(data)))


def test_upload_raises_naming_the_photo(tmp_path: Path, hist: HistEmbedder) -> None:
    settings = Settings(data_dir=tmp_path / "data", max_image_bytes=1000)
    with pytest.raises(TooLarge) as big:
        ingest_upload(settings, b"x" * 1001, 2, hist)
    assert big.value.message == "image 2 is 1001 bytes; the limit is 1000"
    with pytest.raises(UnsupportedMedia) as html:
        ingest_upload(settings, b"<!doctype html><html>no</html>", 3, hist)
    assert html.value.message.startswith("image 3: unsupported image type")
    with pytest.raises(InvalidImage) as cut:
        ingest_upload(settings, image_bytes(6, size=200)[:300], 1, hist)
    assert cut.value.message.startswith("image 1: ")
    assert not (settings.data_dir / "images").exists()


def test_a_worker_reason_becomes_the_local_reject() -> None:
    read = "cannot read image /mnt/photos/a.jpg: No such file or directory"
    assert worker_reason("photos/a.jpg", read) == read
    decode = "the image is empty (0 bytes)"
    assert worker_reason("photos/a.jpg", decode) == "image photos/a.jpg: " + decode
