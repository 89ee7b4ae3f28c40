"""Operations routes, metrics content and the OpenAPI description."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.testclient import TestClient

from shoplens.ar_assets import tools
from tests.service.conftest import AppFactory
from tests.service.helpers import DEFAULT_MODEL, demo_photo, search


@pytest.mark.real_model
def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready" and body["model"] == DEFAULT_MODEL
    assert body["products"] == 300 and body["images"] == 300 and body["vectors"] == 300


@pytest.mark.real_model
def test_metrics(client: TestClient) -> None:
    assert search(client, demo_photo("banana")).status_code == 200
    assert client.get("/v1/products/nope").status_code == 404
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        'shoplens_http_request_duration_seconds_count{method="POST",route="/v1/search",'
        'status="200"} 1.0' in text
    )
    assert 'route="/v1/products/{product_id}",status="404"' in text
    assert 'shoplens_embed_seconds_count{kind="image"}' in text
    assert 'shoplens_search_seconds_count{kind="image"} 1.0' in text
    assert 'shoplens_index_size{kind="products"} 300.0' in text
    assert 'shoplens_index_size{kind="vectors"} 300.0' in text
    assert f'shoplens_index_info{{model="{DEFAULT_MODEL}",version="' in text
    assert "shoplens_ready 1.0" in text


def test_two_apps_have_separate_metrics(
    client: TestClient, make_client: AppFactory, data_dir: Path
) -> None:
    # Several apps in one process: each has its own registry, nothing is shared.
    search(client, demo_photo("banana"))
    with make_client(data_dir) as other:
        assert 'shoplens_search_seconds_count{kind="image"}' not in other.get("/metrics").text
    assert 'shoplens_search_seconds_count{kind="image"} 1.0' in client.get("/metrics").text


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    r = client.get("/v1/nothing-here")
    assert r.status_code == 404
    assert r.json()["error"]["code"] == "not_found"
    r = client.patch("/v1/search")
    assert r.status_code == 405
    assert r.json()["error"]["code"] == "method_not_allowed"


def test_openapi_lists_every_route(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/v1/search": {"get", "post"},
        "/v1/products/{product_id}": {"get", "put", "delete"},
        "/v1/products/{product_id}/similar": {"get"},
        "/v1/images/{image_id}": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
        "/": {"get"},
        "/demo/samples": {"get"},
        "/demo/samples/{name}": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), path
    post = paths["/v1/search"]["post"]
    params = {p["name"] for p in post["parameters"]}
    assert {"k", "category", "in_stock", "min_price", "max_price", "min_score", "crop"} <= params
    for status in ("400", "413", "415", "422", "503"):
        ref = post["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody")
    put = paths["/v1/products/{product_id}"]["put"]
    assert {"401", "403", "201"} <= set(put["responses"])
    assert "SearchResponse" in spec["components"]["schemas"]
    # Validation failures are answered 400 ErrorBody, and documented so.
    assert "HTTPValidationError" not in client.get("/openapi.json").text
    for path in ("/v1/products/{product_id}", "/v1/images/{image_id}"):
        assert "400" in paths[path]["get"]["responses"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_cors_when_configured(make_client: AppFactory, data_dir: Path) -> None:
    origin = "https://shop.example"
    with make_client(data_dir, cors_origins=[origin]) as c:
        r = c.options(
            "/v1/search",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == origin
        r = c.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in r.headers


def test_unexpected_errors_are_500_in_the_contract_shape(
    make_client: AppFactory, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A bug (not client input) in some handler: answered 500 internal_error and logged.
    with make_client(data_dir) as c:
        app = c.app
        assert isinstance(app, FastAPI)

        @app.get("/v1/boom")
        async def boom() -> None:
            raise RuntimeError("a bug")

        r = c.get("/v1/boom")
    assert r.status_code == 500
    error = r.json()["error"]
    assert error["code"] == "internal_error"
    assert error["message"] == "an unexpected error happened on the server"
    assert "a bug" not in r.text
    assert any("unexpected error on GET /v1/boom" in rec.message for rec in caplog.records)


NODE_CAPABILITIES = ("khronos_validator", "gltf_transform")
READINESS_FIELDS = ("status", "model", "index_version", "products", "images", "vectors")


def _hide_node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A PATH without node, as on a machine where Node was never installed."""
    empty = tmp_path / "no-node"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def _start_up_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name == "shoplens.service.state"
    ]


def test_without_node_start_up_warns_and_readiness_says_so(
    make_client: AppFactory,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _hide_node(tmp_path, monkeypatch)
    with make_client(data_dir) as c:
        r = c.get("/readyz")
    assert r.status_code == 200  # a missing optional tool does not make the service unready
    body = r.json()
    assert all(k in body for k in READINESS_FIELDS) and body["status"] == "ready"
    caps = body["capabilities"]
    assert set(caps) == {
        "khronos_validator",
        "gltf_transform",
        "usdz",
        "heic",
        "avif",
        "export",
        "openclip",
        "ray",
    }
    for name in NODE_CAPABILITIES:
        cap = caps[name]
        assert (cap["available"], cap["used"]) == (False, True), cap
        assert cap["found"] == "node is not on PATH"
        assert "scripts/install-node-tools.sh" in cap["install"]
    warnings = _start_up_warnings(caplog)
    assert any(m.startswith("Khronos glTF validator") for m in warnings), warnings
    assert any(m.startswith("glTF-Transform") and "phones get" in m for m in warnings), warnings
    assert all("shoplens doctor" in m for m in warnings)


def test_with_node_readiness_has_the_tools_and_start_up_is_quiet(
    make_client: AppFactory, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    t = tools.find_tools()
    if t.validator is None or t.decoders is None:
        pytest.skip("node + node_modules (gltf-validator, @gltf-transform/cli) are not installed")
    with make_client(data_dir) as c:
        caps = c.get("/readyz").json()["capabilities"]
    for name in NODE_CAPABILITIES:
        assert caps[name]["available"] is True, caps[name]
        assert str(t.node_modules) in caps[name]["found"]
    # Only what this configuration uses and lacks is warned about (Ray, say, is not used).
    degraded = [c["title"] for c in caps.values() if c["used"] and not c["available"]]
    assert len(_start_up_warnings(caplog)) == len(degraded)
