"""The generated hostile corpora through the real app: never a 5xx, healthy afterwards."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from shoplens import demo
from shoplens.ar_assets import tools
from tests.hardening.conftest import N_SYNTHETIC, AppFactory
from tests.hardening.corpus.images import malformed_images
from tests.hardening.corpus.models3d import malformed_3d
from tests.service.helpers import demo_photo, search

IMAGES = malformed_images()
MODELS = malformed_3d()

# Cases whose answer is known exactly (the rest only need to be 2xx/4xx).
IMAGE_STATUS = {
    "empty": 422,
    "png-bomb-10k": 413,
    "png-huge-dims": 413,
    "png-max-dims": 413,
    "png-76mp": 413,
    "jpeg-huge-dims": 413,
    "jpeg-9k-by-9k": 413,
    "gif-huge-screen": 413,
    "html": 415,
    "svg": 415,
    "svg-xxe": 415,
    "pdf": 415,
    "bmp": 415,
    "tiff-le": 415,
    "zip": 415,
    "glb": 415,
    "mp4": 415,
    "random-4k": 415,
    "png-zero-width": 422,
    "jpeg-soi-eoi": 422,
}
UNSAFE_3D = {
    name
    for name, _ in MODELS
    if name.startswith(("zip-", "glb-uri", "glb-buffer-uri", "glb-data-uri"))
    or name in ("json-deeply-nested", "json-huge-object")
}


def _healthy(client: TestClient) -> None:
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    r = search(client, demo_photo("banana"), k=3)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["product_id"] == "banana"


def test_corpora_are_big_enough() -> None:
    assert len(IMAGES) >= 200
    assert len(MODELS) >= 50
    formats = {name.split("-")[0] for name, _ in IMAGES}
    assert {"jpeg", "png", "webp", "gif", "heif", "avif"} <= formats


def test_malformed_images_never_5xx(
    client: TestClient, admin: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    for i, (name, data) in enumerate(IMAGES):
        # The declared name and type lie on purpose: only the bytes may count.
        r = client.post(
            "/v1/search",
            params={"k": 3},
            files={"image": ("photo.png", data, "image/png")},
        )
        statuses[r.status_code] += 1
        if r.status_code >= 500 or (r.status_code >= 400 and "error" not in r.json()):
            wrong.append(f"{name}: {r.status_code} {r.text[:200]}")
        if name in IMAGE_STATUS and r.status_code != IMAGE_STATUS[name]:
            expected = IMAGE_STATUS[name]
            wrong.append(f"{name}: expected {expected}, got {r.status_code} {r.text[:200]}")
        if i % 5 == 0:  # the catalog write path decodes and re-encodes too
            p = client.put(
                f"/v1/products/fuzz-{i}",
                data={"meta": '{"title": "fuzz"}'},
                files={"image": ("a.jpg", data, "image/jpeg")},
                headers=admin,
            )
            statuses[p.status_code] += 1
            if p.status_code >= 500:
                wrong.append(f"PUT {name}: {p.status_code} {p.text[:200]}")
    with capsys.disabled():
        print(f"\nmalformed images: {len(IMAGES)} files, answers {dict(sorted(statuses.items()))}")
    assert not wrong, "\n".join(wrong)
    assert not any(s >= 500 for s in statuses)
    _healthy(client)


def _outside_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and "ar" not in p.relative_to(root).parts}


@pytest.fixture
def no_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Shoplens' own checks only: they must refuse all of this without Node (and fast)."""
    monkeypatch.setattr(tools, "find_tools", lambda: tools.NodeTools(None, None))


def _product_ids() -> list[str]:
    """The hardening catalog's products (tests/hardening/conftest.py): a model attaches
    only to a product of the catalog, and each model here gets its own."""
    with demo.manifest_path().open(encoding="utf-8", newline="") as f:
        ids = list(dict.fromkeys(row["product_id"] for row in csv.DictReader(f)))
    ids += [f"synthetic-{i:03d}" for i in range(N_SYNTHETIC)]
    assert len(ids) >= len(MODELS)
    return ids


def _upload_all(client: TestClient, admin: dict[str, str]) -> tuple[Counter[int], list[str]]:
    statuses: Counter[int] = Counter()
    wrong: list[str] = []
    for (name, data), pid in zip(MODELS, _product_ids(), strict=False):
        filename = "model.zip" if data.startswith(b"PK") else "model.glb"
        r = client.put(
            f"/v1/products/{pid}/ar",
            files={"file": (filename, data, "model/gltf-binary")},
            data={"placement": "floor"},
            headers=admin,
        )
        statuses[r.status_code] += 1
        if r.status_code >= 500:
            wrong.append(f"{name}: {r.status_code} {r.text[:300]}")
        if name in UNSAFE_3D and r.status_code not in (413, 415, 422):
            wrong.append(f"{name}: unsafe upload answered {r.status_code} {r.text[:300]}")
        if r.status_code == 422:
            body = r.json()
            if not body["error"]["message"] or "report" not in body:
                wrong.append(f"{name}: 422 without a message and report: {r.text[:300]}")
        if r.status_code >= 400 and client.get(f"/v1/products/{pid}/ar").status_code != 404:
            wrong.append(f"{name}: refused but an asset is stored")
    return statuses, wrong


def _check_nothing_escaped(data_dir: Path, before: set[Path]) -> None:
    assert not (data_dir.parent / "evil.txt").exists()
    assert not Path("/tmp/shoplens-evil.txt").exists()
    assert not list(data_dir.parent.rglob("evil.txt"))
    new_outside = _outside_files(data_dir) - before
    # The catalog and feedback databases (opened lazily by the first request that
    # needs them) may appear or grow their WAL files, and the health check's photo
    # search adds to the shop's query mean (query_domain/: a sum and a count);
    # nothing else appears outside ar/.
    databases = {
        f"{db}{tail}" for db in ("catalog.db", "feedback.db") for tail in ("", "-wal", "-shm")
    }
    stray = {p for p in new_outside if p.relative_to(data_dir).parts[0] != "query_domain"}
    assert {p.name for p in stray} <= databases - {"catalog.db"}, stray
    for p in new_outside - stray:
        assert p.name.endswith((".npz", ".lock")), p
    leftovers = [p for p in (data_dir / "ar" / "tmp").rglob("*") if p.is_file()]
    assert not leftovers


def test_malformed_3d_never_5xx(
    make_client: AppFactory,
    data_dir: Path,
    admin: dict[str, str],
    no_node: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = _outside_files(data_dir)
    with make_client(data_dir) as client:
        statuses, wrong = _upload_all(client, admin)
        with capsys.disabled():
            print(f"\nmalformed 3D: {len(MODELS)} files, answers {dict(sorted(statuses.items()))}")
        assert not wrong, "\n".join(wrong)
        _healthy(client)
    _check_nothing_escaped(data_dir, before)


@pytest.mark.slow
def test_malformed_3d_with_the_khronos_validator(
    make_client: AppFactory, data_dir: Path, admin: dict[str, str], node_tools: object
) -> None:
    before = _outside_files(data_dir)
    with make_client(data_dir) as client:
        _, wrong = _upload_all(client, admin)
        assert not wrong, "\n".join(wrong)
        _healthy(client)
    _check_nothing_escaped(data_dir, before)


@pytest.fixture(scope="session")
def node_tools() -> tools.NodeTools:
    t = tools.find_tools()
    if t.validator is None:
        pytest.skip("node + gltf-validator are not installed")
    return t
