"""The Ray engine computes the local path's vectors, and turns bad items into errors.

The model is a tiny ONNX graph written here (pool + matmul, 16-d) in the
exported-model layout, so the test needs no export and stays fast; a second
(slow) test uses the real default model when the registry can load it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from shoplens.indexer.engines.ray_engine import (
    EmbedActor,
    Item,
    decode_batch,
    embed_with_ray,
    model_files,
    read_preprocess,
)
from shoplens.models.base import FloatArray, PreprocessConfig, preprocess
from shoplens.models.decode import decode_image
from shoplens.models.onnx_embedder import OnnxEmbedder
from tests.indexer.engines.compare import encoded, mixed_refs, run_engine

CROP = 56
DIM = 16


def _tiny_model(folder: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((48, DIM)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node(
                "AveragePool", ["pixels"], ["pooled"], kernel_shape=[14, 14], strides=[14, 14]
            ),
            helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "weight"], ["embedding"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["n", 3, CROP, CROP])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", DIM])],
        initializer=[numpy_helper.from_array(weight, "weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    cfg = PreprocessConfig(resize=64, crop=CROP, interpolation="bicubic")
    (folder / "preprocess.json").write_text(json.dumps(cfg.to_dict()))
    (folder / "meta.json").write_text(json.dumps({"name": "tiny", "dim": DIM}))
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_model(tmp_path_factory.mktemp("model") / "tiny-000000000000")


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[Item]:
    on_disk = tmp_path_factory.mktemp("photos") / "p.png"
    on_disk.write_bytes(encoded("PNG", 9, (90, 70)))
    good: list[Item] = [
        (f"jpeg-{i}", encoded("JPEG", i, (80 + 17 * i, 60 + 11 * i))) for i in range(5)
    ]
    # A large JPEG: the decoder's draft (DCT-scaled) path must match the local path too.
    good.append(("jpeg-big", encoded("JPEG", 7, (640, 480))))
    good.append(("png", encoded("PNG", 8, (64, 100))))
    good.append(("webp", encoded("WEBP", 10, (77, 77))))
    good.append(("on-disk", on_disk))
    return good


BAD: list[Item] = [
    ("html", b"<!doctype html><html>not a photo</html>"),
    ("truncated", encoded("JPEG", 3, (120, 120))[:4000]),
    ("empty", b""),
    ("missing-file", Path("/nonexistent/shoplens/x.jpg")),
]


def _local_vectors(model_dir: Path, items: list[Item]) -> dict[str, FloatArray]:
    """The single-process path: decode + preprocess + the same ORT model, no Ray."""
    embedder = OnnxEmbedder(model_dir)
    cfg = embedder.preprocess_config
    out = {}
    for key, source in items:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        image = decode_image(data, draft_size=cfg.resize)
        out[key] = embedder.embed_prepared(preprocess(image, cfg)[None])[0]
    return out


def _as_batch(items: list[Item]) -> dict[str, np.ndarray]:
    return {
        "key": np.asarray([k for k, _ in items], dtype=object),
        "data": np.asarray([s if isinstance(s, bytes) else b"" for _, s in items], dtype=object),
        "path": np.asarray([str(s) if isinstance(s, Path) else "" for _, s in items], dtype=object),
    }


def test_stages_without_ray_match_the_local_path(model_dir: Path, items: list[Item]) -> None:
    """decode_batch + EmbedActor called directly (what the Ray workers run)."""
    cfg = read_preprocess(model_dir)
    decoded = decode_batch(
        _as_batch(items + BAD), preprocess_cfg=cfg.to_dict(), max_pixels=10_000_000
    )
    assert decoded["pixels"].shape == (len(items) + len(BAD), 3, CROP, CROP)
    out = EmbedActor(model_files(model_dir))(decoded)  # shipped as bytes
    by_path = EmbedActor(str(model_dir))(decoded)  # from a shared path
    np.testing.assert_array_equal(out["vector"], by_path["vector"])
    expected = _local_vectors(model_dir, items)
    for i, key in enumerate(out["key"]):
        if key in expected:
            assert out["error"][i] == ""
            np.testing.assert_allclose(out["vector"][i], expected[key], atol=1e-5)
        else:
            assert out["error"][i] != "" and not out["vector"][i].any()
    errors = dict(zip(out["key"], out["error"], strict=True))
    assert errors["html"].startswith("unsupported image type: a HTML file")
    assert "truncated or corrupt" in errors["truncated"]
    assert errors["empty"] == "the image is empty (0 bytes)"
    assert errors["missing-file"].startswith("cannot read image /nonexistent/shoplens/x.jpg")


def test_pixel_limit_is_an_error_not_a_crash(model_dir: Path, items: list[Item]) -> None:
    cfg = read_preprocess(model_dir)
    decoded = decode_batch(_as_batch(items[:1]), preprocess_cfg=cfg.to_dict(), max_pixels=100)
    assert "too many pixels" in decoded["error"][0]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray")
    # address="local": a private instance, never a cluster someone else started here.
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=256 * 1024 * 1024,
        log_to_driver=False,
    )
    try:
        yield
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_ray_vectors_equal_local_vectors(
    local_ray: None, model_dir: Path, items: list[Item]
) -> None:
    result = embed_with_ray(items + BAD, model_dir=model_dir, batch_size=4, actors=1)
    expected = _local_vectors(model_dir, items)
    assert set(result.vectors) == set(expected)
    for key, vector in expected.items():
        assert result.vectors[key].shape == (DIM,)
        np.testing.assert_allclose(result.vectors[key], vector, atol=1e-5)
    assert set(result.errors) == {k for k, _ in BAD}
    assert "truncated or corrupt" in result.errors["truncated"]
    png = dict(items)["png"]
    assert isinstance(png, bytes) and result.sha256["png"] == hashlib.sha256(png).hexdigest()


@pytest.mark.slow
def test_ray_with_the_real_default_model(local_ray: None, items: list[Item]) -> None:
    registry = pytest.importorskip("shoplens.models.registry")
    from shoplens.config import Settings

    embedder = registry.load_embedder(Settings())
    model_dir = getattr(embedder, "model_dir", None)
    if model_dir is None:
        pytest.skip("the default embedder is not an exported ONNX model")
    result = embed_with_ray(items, model_dir=model_dir, batch_size=4, actors=1)
    cfg = embedder.preprocess_config
    for key, source in items:
        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        image = decode_image(data, draft_size=cfg.resize)
        local = embedder.embed_prepared(embedder.prepare(image)[None])[0]
        np.testing.assert_allclose(result.vectors[key], local, atol=1e-5)


@pytest.mark.slow
def test_embed_missing_ray_is_a_drop_in_for_embed_missing(
    local_ray: None, model_dir: Path, tmp_path: Path
) -> None:
    from shoplens.indexer.catalog.photos import photo_path
    from shoplens.indexer.engines.base import EmbedResult
    from shoplens.indexer.engines.ingest import REMOTE_UNSUPPORTED
    from shoplens.indexer.engines.local import embed_missing
    from shoplens.indexer.engines.ray_engine import embed_missing_ray

    refs = mixed_refs(tmp_path / "photos", 21)
    embedder = OnnxEmbedder(model_dir)

    def run(engine: str, data_dir: Path) -> tuple[EmbedResult, dict[str, FloatArray]]:
        return run_engine(
            embed_missing if engine == "local" else embed_missing_ray, embedder, refs, data_dir
        )

    local, local_vectors = run("local", tmp_path / "local")
    remote, remote_vectors = run("ray", tmp_path / "ray")
    assert remote.shas == local.shas
    assert len(remote.shas) == 4
    key = lambda r: r.line  # noqa: E731
    assert sorted(remote.rejects, key=key) == sorted(local.rejects, key=key)
    reasons = {r.line: r.reason for r in remote.rejects}
    assert reasons[21] == REMOTE_UNSUPPORTED
    assert reasons[20] == "image file not found: gone.jpg"
    assert reasons[5].startswith("image bad.jpg: unsupported image type")
    assert remote.indexed + remote.unchanged == 4
    for sha, vector in local_vectors.items():
        np.testing.assert_allclose(remote_vectors[sha], vector, atol=1e-5)
        assert photo_path(tmp_path / "ray", sha).is_file()

    # A second run finds the good rows done; only the bad row goes to Ray again
    # (rejects are not remembered: the file may have been fixed since).
    again, _ = run("ray", tmp_path / "ray")
    assert (again.indexed, again.unchanged, again.batches) == (0, 4, 1)
    assert len(again.rejects) == 3
