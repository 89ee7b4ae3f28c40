"""The OpenAPI description says what the service does: every status a route
answers, the parameter rules and the admin scheme (test_methods.py: 405s).
tests/hardening/test_schemathesis.py fuzzes the whole description against the
app; these pin the decisions in readable form."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from shoplens.ids import PRODUCT_ID_PATTERN


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(p, m, op) for p, item in spec["paths"].items() for m, op in item.items()]


def _param(op: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in op["parameters"] if p["name"] == name)
    return found


def test_every_error_status_is_documented_with_the_error_body(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    ids = [op["operationId"] for _, _, op in _operations(spec)]
    assert len(ids) == len(set(ids))  # GET and HEAD of /ar/files are two operations
    for path, method, op in _operations(spec):
        responses = op["responses"]
        # Unknown and malformed parameters are a 400 on every route.
        assert "400" in responses, (method, path)
        for status, response in responses.items():
            if int(status) >= 400 and int(status) != 416:
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path)
        rate_limited = path not in ("/healthz", "/readyz", "/metrics")
        assert ("429" in responses) == rate_limited, (method, path)
    paths = spec["paths"]
    assert {"404", "413", "415", "422"} <= set(
        paths["/v1/products/{product_id}/ar"]["put"]["responses"]
    )
    for path in ("/v1/products/{product_id}/ar", "/ar/files/{name}", "/ar/view/{product_id}"):
        assert "404" in paths[path]["get"]["responses"], path
    assert {"206", "304", "416"} <= set(paths["/ar/files/{name}"]["head"]["responses"])


def test_admin_routes_declare_the_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["adminToken"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    admin = {
        ("/v1/products/{product_id}", "put"),
        ("/v1/products/{product_id}", "delete"),
        ("/v1/products/{product_id}/ar", "put"),
        ("/v1/products/{product_id}/ar", "delete"),
        ("/v1/admin/reindex", "post"),
        ("/v1/admin/jobs/{job_id}", "get"),
        ("/v1/admin/learn", "post"),
        ("/v1/admin/feedback", "get"),
        ("/v1/admin/feedback/{photo_id}/photo", "get"),
        ("/v1/admin/feedback/{photo_id}/approve", "post"),
        ("/v1/admin/feedback/{photo_id}/reject", "post"),
        ("/v1/admin/feedback/{photo_id}", "delete"),
    }
    for path, method, op in _operations(spec):
        declared = op.get("security") == [{"adminToken": []}]
        assert declared == ((path, method) in admin), (method, path)
        if declared:
            assert {"401", "403"} <= set(op["responses"]), (method, path)


def test_parameter_rules_are_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/v1/products/{product_id}", "/v1/products/{product_id}/ar"):
        assert _param(paths[path]["get"], "product_id")["schema"]["pattern"] == PRODUCT_ID_PATTERN
    post = paths["/v1/search"]["post"]
    crop = _param(post, "crop")["schema"]
    assert crop["pattern"] == "^[^,]+(,[^,]+){3}$"
    k = _param(post, "k")["schema"]
    assert (k["minimum"], k["maximum"]) == (1, 100)
    assert _param(paths["/v1/images/{image_id}"]["get"], "image_id")["schema"]["pattern"]
    files = paths["/ar/files/{name}"]["get"]
    assert _param(files, "name")["schema"]["pattern"] == r"^[0-9a-f]{64}\.(glb|usdz|zip)$"
    assert _param(files, "Range")["in"] == "header"
