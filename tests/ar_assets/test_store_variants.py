"""The store's per-variant USDZs (issue #15): kept while a row names them, collected
after, and databases from before the column open with it added."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

from shoplens.ar_assets.store import SCHEMA, AssetStore

from .test_store import _file, _row


def test_variant_usdz_files_live_as_long_as_a_row_names_them(tmp_path: Path) -> None:
    store = AssetStore(tmp_path / "files", tmp_path / "db.sqlite")
    glb_sha, glb = _file(tmp_path, b"model")
    red_sha, red = _file(tmp_path, b"red usdz")
    row = dataclasses.replace(_row("p1", glb_sha), variant_usdz={"Red": red_sha})
    store.save(row, {(glb_sha, "glb"): glb, (red_sha, "usdz"): red})
    store.save(dataclasses.replace(row, product_id="p2"), {(glb_sha, "glb"): glb})
    assert store.get("p1", "default") == row
    store.delete("p1")
    assert store.path(red_sha, "usdz").read_bytes() == b"red usdz"  # p2 still names it
    store.save(_row("p2", glb_sha), {(glb_sha, "glb"): glb})  # replaced, no variants
    assert not store.path(red_sha, "usdz").exists()
    assert store.path(glb_sha, "glb").exists()


def test_database_from_before_gets_the_column(tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite"
    with sqlite3.connect(db_path) as db:
        db.executescript(SCHEMA)  # the table as the first release made it
        db.execute(
            "INSERT INTO ar_assets VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            ("p1", "default", "floor", "m.glb", "a" * 64, "glb", "a" * 64, "a" * 64, None,
             "{}", 1, 1, 1, "[]", "{}", 1.0),
        )  # fmt: skip
    store = AssetStore(tmp_path / "files", db_path)
    (row,) = store.rows(["p1"])
    assert row.variant_usdz == {}
    AssetStore(tmp_path / "files", db_path)  # opening again changes nothing
    assert store.rows(["p1"]) == [row]
