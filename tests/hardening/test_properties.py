"""Property-based tests of the two parsers of untrusted input that everything else
trusts: the manifest reader and the image decoder. Whatever the bytes, they answer
with a result or one of Shoplens' own errors, never anything else."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from shoplens.errors import ManifestError, ShoplensError
from shoplens.indexer.sources.manifest import RowError, product_from_mapping, read_manifest
from shoplens.models.decode import SUPPORTED_FORMATS, decode_image, parse_crop, sniff_format
from tests.hardening.corpus.images import base_images

BASES = base_images()
FAST = settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
MAX_PIXELS = 4_000_000


@st.composite
def damaged_images(draw: st.DrawFn) -> bytes:
    """A valid file of a random format with random truncation, flips and splices."""
    data = bytearray(BASES[draw(st.sampled_from(sorted(BASES)))])
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data[at:at] = draw(st.binary(max_size=64))
    return bytes(data)


def _check_decode(data: bytes) -> None:
    try:
        image = decode_image(data, max_pixels=MAX_PIXELS)
    except ShoplensError as exc:
        assert exc.status in (413, 415, 422), exc
        return
    assert image.mode == "RGB"
    assert 0 < image.width * image.height <= MAX_PIXELS
    assert sniff_format(data) in SUPPORTED_FORMATS


@FAST
@given(damaged_images())
def test_decoder_on_damaged_images(data: bytes) -> None:
    _check_decode(data)


@FAST
@given(st.binary(max_size=4096))
def test_decoder_on_arbitrary_bytes(data: bytes) -> None:
    assert sniff_format(data) is None or isinstance(sniff_format(data), str)
    _check_decode(data)


@FAST
@given(
    st.sampled_from(
        [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBPVP8 "]
    ),
    st.binary(max_size=2048),
)
def test_decoder_on_right_magic_random_body(magic: bytes, body: bytes) -> None:
    _check_decode(magic + body)


@FAST
@given(st.text(max_size=60))
def test_crop_parser(text: str) -> None:
    try:
        crop = parse_crop(text)
    except ShoplensError as exc:
        assert exc.status == 400
        return
    assert 0 <= crop.x < 1 and 0 <= crop.y < 1
    assert 0 < crop.w <= 1 - crop.x + 1e-9 and 0 < crop.h <= 1 - crop.y + 1e-9
    left, top, right, bottom = crop.box(640, 480)
    assert 0 <= left < right <= 640 and 0 <= top < bottom <= 480


CELL = st.text(st.characters(exclude_categories=["Cs"]), max_size=20)
JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | CELL,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELL, inner, max_size=3),
    max_leaves=10,
)


def _read(text: str, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / f"manifest{suffix}"
        path.write_text(text, encoding="utf-8")
        try:
            manifest = read_manifest(path)
        except ManifestError:
            return
        lines = [r.line for r in manifest.rejects]
        assert all(n >= 1 for n in lines)


@FAST
@given(st.lists(st.lists(CELL, max_size=6), max_size=8), st.sampled_from([",", ";", "\t"]))
def test_manifest_reader_on_arbitrary_csv(rows: list[list[str]], sep: str) -> None:
    header = sep.join(["product_id", "image", "title", "price", "in_stock"])
    _read("\n".join([header] + [sep.join(r) for r in rows]), ".csv")


@FAST
@given(st.lists(st.one_of(JSON_VALUE.map(json.dumps), CELL), max_size=8))
def test_manifest_reader_on_arbitrary_jsonl(lines: list[str]) -> None:
    _read("\n".join(lines), ".jsonl")


@FAST
@given(st.binary(max_size=512))
def test_manifest_reader_on_arbitrary_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "manifest.csv"
        path.write_bytes(data)
        with contextlib.suppress(ManifestError):
            read_manifest(path)


@FAST
@given(
    st.dictionaries(
        st.sampled_from(
            ["product_id", "title", "price", "currency", "in_stock", "category", "brand", "url"]
        ),
        JSON_VALUE,
    )
)
def test_product_rows(row: dict[str, object]) -> None:
    try:
        product = product_from_mapping(row)
    except RowError:
        return
    assert 1 <= len(product.product_id) <= 128
    assert product.price is None or product.price == product.price  # never NaN


def test_a_valid_photo_still_decodes() -> None:
    out = io.BytesIO()
    Image.new("RGB", (32, 16), (10, 200, 30)).save(out, "PNG")
    assert decode_image(out.getvalue()).size == (32, 16)
