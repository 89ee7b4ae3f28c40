"""Property: any CSV a spreadsheet writes parses back to the same rows and line numbers."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from shoplens.indexer.sources.manifest import read_manifest

ids = st.from_regex(r"[A-Za-z0-9._:-]{1,20}", fullmatch=True)
text = st.text(
    # Printable BMP text plus the characters CSV must quote (no surrogates, no CR).
    alphabet=st.one_of(
        st.characters(min_codepoint=32, max_codepoint=0x2FFF), st.sampled_from('\n,"')
    ),
    max_size=30,
)
row = st.tuples(ids, text, st.booleans())


@settings(max_examples=60, deadline=None)
@given(st.lists(row, min_size=1, max_size=12))
def test_csv_roundtrip_with_line_numbers(rows: list[tuple[str, str, bool]]) -> None:
    buf = io.StringIO(newline="")
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["product_id", "image", "title", "in_stock"])
    expected_lines = []
    line = 2
    for pid, title, stock in rows:
        expected_lines.append(line)
        start = buf.tell()
        w.writerow([pid, f"img/{pid}.jpg", title, "yes" if stock else "no"])
        line += buf.getvalue()[start:].count("\n")
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "m.csv"
        p.write_text(buf.getvalue(), encoding="utf-8", newline="")
        m = read_manifest(p)
    assert not m.rejects
    first: dict[str, tuple[str, bool]] = {}
    for pid, title, stock in rows:
        first.setdefault(pid, (title, stock))
    for pid, (title, stock) in first.items():
        got = m.products[pid]
        assert (got.title or "") == title.strip()
        assert got.in_stock is stock
    seen: set[str] = set()
    want = []
    for (pid, _, _), ln in zip(rows, expected_lines, strict=True):
        if pid not in seen:
            seen.add(pid)
            want.append((pid, ln))
    assert [(r.product_id, r.line) for r in m.images] == want
