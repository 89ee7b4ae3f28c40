"""``shoplens ar reconvert``: stored assets made by an older recipe are rebuilt from their
stored original, through the upload's pipeline, one asset at a time and atomically."""

from __future__ import annotations

import copy
import dataclasses
import zipfile
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pxr import Sdf
from typer.testing import CliRunner, Result

from shoplens.ar_assets.pipeline import RECIPE, recipe_of
from shoplens.ar_assets.service import ArService
from shoplens.ar_assets.store import AssetRow, StaleRow
from shoplens.ar_assets.usdz.build import _package
from shoplens.cli import app
from shoplens.config import Settings
from shoplens.files.atomic import sha256_file

from .conftest import upload
from .models import box_glb, gltf_zip
from .test_anchoring import anchoring_of

pytestmark = pytest.mark.usefixtures("node_tools")


def _cli(settings: Settings, *args: str) -> Result:
    return CliRunner().invoke(app, ["ar", "reconvert", *args, "--data-dir", str(settings.data_dir)])


def _unanchored(usdz_file: Path, workdir: Path) -> Path:
    """The USDZ as the recipe before anchoring made it: no Preliminary_AnchoringAPI on /Root."""
    unpacked = workdir / "unpacked"
    with zipfile.ZipFile(usdz_file) as z:
        root_name = z.namelist()[0]
        z.extractall(unpacked)
    layer = Sdf.Layer.FindOrOpen(str(unpacked / root_name))
    spec = layer.GetPrimAtPath("/Root")
    spec.ClearInfo("apiSchemas")
    for name in ("preliminary:anchoring:type", "preliminary:planeAnchoring:alignment"):
        if name in spec.properties:
            spec.RemoveProperty(spec.properties[name])
    old_layer = unpacked / f"old{Path(root_name).suffix}"
    layer.Export(str(old_layer))
    (unpacked / root_name).unlink()
    out = workdir / "old.usdz"
    assert _package(old_layer, out)
    return out


def _make_old(ar: ArService, row: AssetRow, workdir: Path) -> AssetRow:
    """Store ``row`` back as the previous recipe left it: unanchored USDZ, no recipe stamp."""
    assert row.usdz_sha is not None
    workdir.mkdir()
    old_usdz = _unanchored(ar.store.path(row.usdz_sha, "usdz"), workdir)
    old_sha = sha256_file(old_usdz)
    report = copy.deepcopy(row.report)
    del report["stats"]["recipe"]
    del report["stats"]["usdz_anchoring"]
    old = dataclasses.replace(row, usdz_sha=old_sha, report=report)
    ar.store.save(old, {(old_sha, "usdz"): old_usdz})
    stored = ar.store.get(row.product_id, row.variant)
    assert stored is not None and recipe_of(stored.report) == 1
    with pytest.raises(AssertionError):  # really unanchored
        anchoring_of(ar.store.path(old_sha, "usdz"))
    return stored


def _files(settings: Settings) -> set[str]:
    return {p.name for p in settings.assets_dir.iterdir() if p.is_file()}


def test_reconvert_rebuilds_old_assets_and_skips_current(
    client: TestClient, ar_settings: Settings, tmp_path: Path
) -> None:
    ar: ArService = client.app.state.ar  # type: ignore[attr-defined]
    assert upload(client, "sku-wall", box_glb(), placement="wall").status_code == 201
    r = upload(client, "sku-zip", gltf_zip(), filename="m.zip", placement="table", variant="red")
    assert r.status_code == 201
    [wall_new] = ar.rows("sku-wall")
    [zip_new] = ar.rows("sku-zip")
    assert recipe_of(wall_new.report) == RECIPE
    wall = _make_old(ar, wall_new, tmp_path / "w")
    zipped = _make_old(ar, zip_new, tmp_path / "z")
    assert wall_new.usdz_sha is not None and wall.usdz_sha is not None
    assert not ar.store.path(wall_new.usdz_sha, "usdz").exists()  # collected by the swap
    before = _files(ar_settings)

    # --dry-run says what it would do and changes nothing.
    res = _cli(ar_settings, "--all", "--dry-run")
    assert res.exit_code == 0, res.output
    assert f"would rebuild sku-wall/default (recipe 1 -> {RECIPE})" in res.output
    assert "would rebuild sku-zip/red" in res.output
    assert "reconvert: 2 would rebuild, 0 current, 0 failed" in res.output
    assert ar.rows("sku-wall") == [wall] and ar.rows("sku-zip") == [zipped]
    assert _files(ar_settings) == before

    # The zip's stored original is damaged: that asset fails, the other is rebuilt.
    zip_file = ar.store.path(zipped.source_sha, "zip")
    zip_file.write_bytes(zip_file.read_bytes()[:200])
    res = _cli(ar_settings, "--all")
    assert res.exit_code == 1, res.output
    assert "failed  sku-zip/red: the stored original" in res.output
    assert "(damaged)" in res.output
    assert f"rebuilt sku-wall/default (recipe 1 -> {RECIPE})" in res.output
    assert "reconvert: 1 rebuilt, 0 current, 1 failed" in res.output

    # The rebuilt asset: its USDZ carries the wall's anchoring, the AR block points to it,
    # the old USDZ is gone, placement/variant/name/upload time are the stored ones.
    [rebuilt] = ar.rows("sku-wall")
    assert recipe_of(rebuilt.report) == RECIPE
    assert rebuilt.usdz_sha is not None and rebuilt.usdz_sha != wall.usdz_sha
    assert anchoring_of(ar.store.path(rebuilt.usdz_sha, "usdz")) == ("plane", "vertical")
    assert not ar.store.path(wall.usdz_sha, "usdz").exists()
    assert (rebuilt.placement, rebuilt.variant, rebuilt.original_name, rebuilt.created_at) == (
        wall.placement,
        wall.variant,
        wall.original_name,
        wall.created_at,
    )
    block = client.get("/v1/products/sku-wall/ar").json()
    assert block["usdz_url"].endswith(f"/ar/files/{rebuilt.usdz_sha}.usdz")
    assert block["anchoring"] == "plane-vertical"
    got = client.get(f"/ar/files/{rebuilt.usdz_sha}.usdz")
    assert got.status_code == 200
    assert got.content == ar.store.path(rebuilt.usdz_sha, "usdz").read_bytes()

    # The failed one is exactly as it was, and still served.
    assert ar.rows("sku-zip") == [zipped]
    zblock = client.get("/v1/products/sku-zip/ar?variant=red").json()
    assert zblock["usdz_url"].endswith(f"/ar/files/{zipped.usdz_sha}.usdz")
    for url in (zblock["usdz_url"], zblock["glb_url"], zblock["glb_mobile_url"]):
        assert client.get(url.removeprefix("http://testserver")).status_code == 200, url

    # A second run: the rebuilt one is current; named products only.
    after = _files(ar_settings)
    res = _cli(ar_settings, "sku-wall")
    assert res.exit_code == 0, res.output
    assert f"current sku-wall/default (recipe {RECIPE})" in res.output
    assert "reconvert: 0 rebuilt, 1 current, 0 failed" in res.output
    assert ar.rows("sku-wall") == [rebuilt] and _files(ar_settings) == after

    # The original is not stored at all: said so, per asset, in a dry run and a real one.
    zip_file.unlink()
    for extra in (["--dry-run"], []):
        res = _cli(ar_settings, "sku-zip", "sku-none", *extra)
        assert res.exit_code == 1, res.output
        assert "failed  sku-zip/red: the original upload is not stored" in res.output
        assert "failed  sku-none: no AR model" in res.output
        assert ar.rows("sku-zip") == [zipped]


def test_reconvert_needs_ids_or_all(ar_settings: Settings) -> None:
    for args in ([], ["sku", "--all"]):
        res = _cli(ar_settings, *args)
        assert res.exit_code != 0
        assert "give product ids or --all" in str(res.exception)


def test_reconvert_never_overwrites_a_newer_upload(client: TestClient, tmp_path: Path) -> None:
    ar: ArService = client.app.state.ar  # type: ignore[attr-defined]
    assert upload(client, "sku-race", box_glb(), placement="floor").status_code == 201
    [first] = ar.rows("sku-race")
    old = _make_old(ar, first, tmp_path / "o")
    # An upload (same file, another placement: the original stays stored) lands while
    # the rebuild of the old row is under way.
    assert upload(client, "sku-race", box_glb(), placement="face").status_code == 201
    [newer] = ar.rows("sku-race")
    files_before = {p.name for p in ar.store.files_dir.iterdir() if p.is_file()}
    with pytest.raises(StaleRow):
        ar.reconvert(old)
    assert ar.rows("sku-race") == [newer]
    # Nothing the rebuild staged is left behind.
    assert {p.name for p in ar.store.files_dir.iterdir() if p.is_file()} == files_before
