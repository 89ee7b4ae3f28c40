"""Manifest parsing: CSV and JSON Lines, every bad-row kind with its line number."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from shoplens.errors import BadParameter, ManifestError
from shoplens.indexer.catalog.types import ProductRecord
from shoplens.indexer.sources.manifest import (
    ImageRef,
    product_from_mapping,
    read_manifest,
    validate_product,
    write_rejects,
)

CSV_TEXT = """product_id,image,title,price,currency,in_stock,colour
a1,img/a.jpg,Apple,1.50,eur,yes,green
a1,img/a2.jpg,Other title,9,EUR,no,red
,img/x.jpg,No id,,,,
bad id!,img/x.jpg,Bad id,,,,
b2,,No image,,,,
c3,img/c.jpg,Bad price,abc,,,
d4,img/d.jpg,Negative,-1,,,
e5,img/e.jpg,Bad currency,1,EURO,,
f6,img/f.jpg,Bad stock,1,EUR,maybe,
g7,ftp://host/g.jpg,Bad scheme,,,,
h8,https://example.com/h.jpg,Remote,,,,
"i9","img/i.jpg","Multi
line title",2,,0,
j10,img/j.jpg,Too,many,fields,here,x,y
k11,/abs/k.jpg,Absolute,,,,
"""


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_csv_rows_rejects_and_line_numbers(tmp_path: Path) -> None:
    m = read_manifest(_write(tmp_path, "m.csv", CSV_TEXT))
    reasons = {r.line: r.reason for r in m.rejects}
    assert sorted(reasons) == [4, 5, 6, 7, 8, 9, 10, 11, 15]
    assert "missing product_id" in reasons[4]
    assert "product_id" in reasons[5]
    assert "missing image" in reasons[6]
    assert "price" in reasons[7] and "price" in reasons[8]
    assert "currency" in reasons[9]
    assert "in_stock" in reasons[10]
    assert "http" in reasons[11]
    assert "fields" in reasons[15]
    by_line = {r.line: r.product_id for r in m.rejects}
    assert by_line[4] is None and by_line[5] is None and by_line[6] == "b2"

    # First row wins for product metadata; extra columns are attributes.
    a1 = m.products["a1"]
    assert a1 == ProductRecord(
        "a1",
        title="Apple",
        price=1.5,
        currency="EUR",
        in_stock=True,
        attributes={"colour": "green"},
    )
    assert m.products["i9"].title == "Multi\nline title"
    assert m.products["i9"].in_stock is False
    # Multi-line quoted record: the next record's line number counts both lines.
    refs: dict[str, ImageRef] = {}
    for r in m.images:
        refs.setdefault(r.product_id, r)
    assert refs["i9"].line == 13
    assert refs["k11"].line == 16
    assert refs["a1"].path == (tmp_path / "img/a.jpg")
    assert refs["k11"].path == Path("/abs/k.jpg")
    assert refs["h8"].url == "https://example.com/h.jpg" and refs["h8"].path is None
    assert [r.source for r in m.images if r.product_id == "a1"] == ["img/a.jpg", "img/a2.jpg"]
    assert m.partial == {"b2", "c3", "d4", "e5", "f6", "g7"}


def test_jsonl_rows(tmp_path: Path) -> None:
    lines = [
        json.dumps(
            {
                "product_id": "p1",
                "image": "a.jpg",
                "price": 3.25,
                "in_stock": False,
                "size": 42,
                "tags": ["x"],
            }
        ),
        "",
        "{not json",
        json.dumps(["a", "list"]),
        json.dumps({"product_id": "p2"}),
        json.dumps({"product_id": "p3", "image": "c.jpg", "in_stock": "no"}),
    ]
    m = read_manifest(_write(tmp_path, "m.jsonl", "\n".join(lines) + "\n"))
    assert {r.line: r.reason for r in m.rejects}.keys() == {3, 4, 5}
    assert "JSON" in m.rejects[0].reason
    assert "object" in m.rejects[1].reason
    assert m.rejects[2].reason == "missing image"
    p1 = m.products["p1"]
    assert p1.price == 3.25 and p1.in_stock is False
    assert p1.attributes == {"size": "42", "tags": '["x"]'}
    assert m.products["p3"].in_stock is False


def test_format_sniffed_without_extension(tmp_path: Path) -> None:
    j = read_manifest(_write(tmp_path, "m.txt", '{"product_id": "p", "image": "a.jpg"}\n'))
    c = read_manifest(_write(tmp_path, "m2.txt", "product_id,image\np,a.jpg\n"))
    assert list(j.products) == list(c.products) == ["p"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.csv", None, "does not exist"),
        ("noimage.csv", "product_id,title\np,t\n", "no image column"),
        ("empty.csv", "", "empty"),
        ("latin1.csv", "product_id,image,title\np,a.jpg,caf\xe9\n".encode("latin-1"), "UTF-8"),
    ],
)
def test_whole_manifest_errors(
    tmp_path: Path, name: str, content: str | bytes | None, message: str
) -> None:
    p = tmp_path / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    elif content is not None:
        p.write_text(content, encoding="utf-8")
    with pytest.raises(ManifestError, match=message):
        read_manifest(p)


def test_bom_and_header_case(tmp_path: Path) -> None:
    p = tmp_path / "m.csv"
    p.write_bytes("\ufeffProduct_ID,Image,Price\nx,a.jpg,2\n".encode())
    m = read_manifest(p)
    assert m.products["x"].price == 2.0 and not m.rejects


def test_rejects_file_csv_and_jsonl(tmp_path: Path) -> None:
    m = read_manifest(_write(tmp_path, "m.csv", CSV_TEXT))
    write_rejects(tmp_path / "r.csv", m.rejects)
    write_rejects(tmp_path / "r.jsonl", m.rejects)
    with open(tmp_path / "r.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == [r.line for r in m.rejects]
    js = [json.loads(x) for x in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert js[0] == {"line": 4, "product_id": None, "reason": m.rejects[0].reason}


def test_product_from_mapping_and_validate() -> None:
    p = product_from_mapping({"product_id": "x", "price": "10", "currency": "usd", "k": "v"})
    assert (p.price, p.currency, p.attributes) == (10.0, "USD", {"k": "v"})
    with pytest.raises(BadParameter):
        validate_product(ProductRecord("no spaces allowed"))
    with pytest.raises(BadParameter):
        validate_product(ProductRecord("x", price=-2))
    assert validate_product(ProductRecord("x", currency="gbp")).currency == "GBP"
