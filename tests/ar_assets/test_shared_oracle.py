"""Oracle on ../shared/data/ar: whatever the Khronos validator calls an error, Shoplens refuses;
everything else is accepted, with a valid mobile variant and a USDZ that passes the USD checks."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from shoplens.ar_assets import tools
from shoplens.ar_assets.service import ArService
from shoplens.config import Settings
from shoplens.errors import ShoplensError

from .models import box_glb

pytestmark = [pytest.mark.shared, pytest.mark.usefixtures("node_tools")]

SHARED_AR = Path(__file__).resolve().parents[3] / "shared" / "data" / "ar"
ASSETS = sorted(
    [p.name for p in SHARED_AR.glob("*.glb")]
    + [p.name for p in SHARED_AR.glob("*.usdz")]
    + [p.name for p in SHARED_AR.iterdir() if p.is_dir()]
    if SHARED_AR.is_dir()
    else []
)
PLACEMENT = {"SunglassesKhronos": "face", "MaterialsVariantsShoe": "foot"}


def khronos_errors(path: Path) -> int:
    """The oracle: the Khronos validator run directly on the file as published."""
    if path.suffix == ".usdz":
        return 1  # not glTF at all: the validator cannot read it
    t = tools.find_tools()
    out = tools.run_node(
        [str(tools.NODE_SCRIPTS / "khronos_validate.js"), str(t.validator), str(path)],
        timeout=120,
    )
    return int(json.loads(out)["issues"]["numErrors"])


def upload_file(ar_data_dir: Path, name: str, tmp_path: Path) -> tuple[Path, Path]:
    """(file to upload, file the oracle validates): a folder is zipped, like a user would."""
    src = ar_data_dir / name
    if not src.is_dir():
        return src, src
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(src.iterdir()):
            z.write(f, f"{name}/{f.name}")
    up = tmp_path / f"{name}.zip"
    up.write_bytes(buf.getvalue())
    return up, next(src.glob("*.gltf"))


@pytest.mark.parametrize("name", ASSETS)
def test_oracle(ar_data_dir: Path, tmp_path: Path, name: str) -> None:
    up, oracle_path = upload_file(ar_data_dir, name, tmp_path)
    expected_ok = khronos_errors(oracle_path) == 0
    ar = ArService.open(Settings(data_dir=tmp_path / "data"))
    placement = PLACEMENT.get(name.split(".")[0].split("_")[0], "floor")
    if not expected_ok:
        keep = tmp_path / "keep.glb"
        keep.write_bytes(box_glb())
        first, _ = ar.ingest("p", keep)
        with pytest.raises(ShoplensError) as err:
            ar.ingest("p", up, placement=placement)
        assert err.value.status in (415, 422)
        if err.value.status == 422:
            report = err.value.details["report"]
            assert report["errors"], report
        assert ar.block("p", "http://x")["glb_url"].endswith(first.glb_sha + ".glb")
        return
    row, report = ar.ingest("p", up, placement=placement)
    assert report.ok
    stats = report.stats
    assert stats["triangles"] == stats["khronos_triangles"]
    assert stats["mobile_khronos_errors"] in (0, None)
    assert row.mobile_bytes <= row.bytes
    assert stats["usdz_check"].startswith("passed"), report.warnings
    assert row.usdz_sha is not None
    assert all(v > 0 for v in row.dims.values())
    if up.suffix == ".glb":
        stored = ar.file_path(f"{row.glb_sha}.glb")[0]
        assert stored.read_bytes() == up.read_bytes()
