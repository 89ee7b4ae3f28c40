"""Registry: names, caching, the CLI, and serving without torch installed."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable
from shoplens.models import registry
from shoplens.models.base import ImageEmbedder
from shoplens.models.onnx_embedder import OnnxEmbedder

REPO = Path(__file__).resolve().parents[2]


def test_builtin_models_are_listed() -> None:
    infos = {m.name: m for m in registry.available_models()}
    assert {"effnet-lite0", "effnet-lite1", "effnet-lite2"} <= set(infos)
    lite0 = infos["effnet-lite0"]
    assert (lite0.dim, lite0.input_size, lite0.supports_text) == (1280, 224, False)
    assert infos["effnet-lite2"].input_size == 260


def test_unknown_model_is_refused(settings: Settings) -> None:
    bad = settings.model_copy(update={"model": "resnet-9000"})
    with pytest.raises(ModelUnavailable, match="unknown model 'resnet-9000'"):
        registry.load_embedder(bad)


def test_effnet_has_no_text_tower(settings: Settings) -> None:
    assert registry.load_text_embedder(settings) is None
    assert not registry.supports_text("effnet-lite0")
    assert registry.supports_text("open_clip:ViT-B-32")


def test_loading_twice_reuses_the_export(embedder: ImageEmbedder) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    again = registry.load_embedder(Settings(model="effnet-lite0"))
    assert isinstance(again, OnnxEmbedder)
    assert again.model_dir == embedder.model_dir
    assert registry.cached_model_dir("effnet-lite0", Settings()) == embedder.model_dir
    assert registry.export_model("effnet-lite0", Settings()) == embedder.model_dir


def test_threads_setting_reaches_the_session(embedder: ImageEmbedder) -> None:
    one = registry.load_embedder(Settings(ort_threads=1))
    assert isinstance(one, OnnxEmbedder) and one.threads == 1


def test_cli_lists_and_exports(embedder: OnnxEmbedder) -> None:
    from shoplens.cli import app

    runner = CliRunner()
    listed = runner.invoke(app, ["models", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = {r["name"]: r for r in json.loads(listed.output)["models"]}
    assert rows["effnet-lite0"]["exported"] is True
    assert rows["effnet-lite0"]["where"] == str(embedder.model_dir)
    table = runner.invoke(app, ["models", "list"])
    assert table.exit_code == 0 and "effnet-lite0" in table.output
    exported = runner.invoke(app, ["models", "export", "effnet-lite0"])
    assert exported.exit_code == 0, exported.output
    assert exported.output.strip() == str(embedder.model_dir)


_NO_TORCH = textwrap.dedent(
    """
    import importlib.abc, sys

    class _Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "timm", "open_clip", "torchvision"}:
                raise ModuleNotFoundError(f"No module named {name!r}")
            return None

    sys.meta_path.insert(0, _Blocked())

    from pathlib import Path
    from PIL import Image
    from shoplens.config import Settings
    from shoplens.errors import ModelUnavailable
    from shoplens.models.registry import load_embedder

    lite0 = load_embedder(Settings(model="effnet-lite0"))
    vectors = lite0.embed([Image.new("RGB", (300, 200), (90, 160, 40))])
    assert vectors.shape == (1, 1280), vectors.shape
    try:
        load_embedder(Settings(model="effnet-lite0", model_cache_dir=Path(sys.argv[1])))
    except ModelUnavailable as exc:
        print("UNAVAILABLE:", exc.message)
    assert "torch" not in sys.modules
    print("OK")
    """
)


def test_serving_needs_no_torch_once_exported(embedder: ImageEmbedder, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _NO_TORCH, str(tmp_path / "empty-cache")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "OK" in done.stdout
    # With nothing cached, the message says how to get the export done.
    assert "pip install 'shoplens[export]'" in done.stdout
    assert "shoplens models export" in done.stdout


def test_int8_variant_loads_through_the_registry(embedder: ImageEmbedder) -> None:
    # Quantized once per machine (like the float32 export), then reused.
    int8 = registry.load_embedder(Settings(model="effnet-lite0-int8"))
    assert isinstance(int8, OnnxEmbedder) and isinstance(embedder, OnnxEmbedder)
    assert (int8.name, int8.dim) == ("effnet-lite0-int8", 1280)
    assert int8.model_dir.parent == embedder.model_dir.parent
    assert registry.cached_model_dir("effnet-lite0-int8", Settings()) == int8.model_dir
    with pytest.raises(ModelUnavailable, match="ONNX Runtime only"):
        registry.load_torch_embedder("effnet-lite0-int8", Settings())
    assert "effnet-lite0-int8" in {m.name for m in registry.available_models()}
