"""405 answers: ``Allow`` lists every method the path supports, as documented."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("OPTIONS", "/v1/search", "GET, POST"),
        ("PATCH", "/v1/products/banana", "DELETE, GET, PUT"),
        ("OPTIONS", "/v1/products/banana/ar", "DELETE, GET, PUT"),
        ("POST", "/ar/files/" + "0" * 64 + ".glb", "GET, HEAD"),
        ("DELETE", "/healthz", "GET"),
        ("POST", "/static/swagger/swagger-ui.css", "GET, HEAD"),
    ],
)
def test_405_allow_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    r = client.request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    error = r.json()["error"]
    assert error["code"] == "method_not_allowed"
    assert allow in error["message"]


def test_allow_matches_the_documented_methods(client: TestClient) -> None:
    """For every documented path, what a 405 says is allowed is what the description lists."""
    spec = client.get("/openapi.json").json()
    for template, item in spec["paths"].items():
        path = template.replace("{product_id}", "banana").replace("{name}", "x")
        path = path.replace("{image_id}", "0" * 20).replace("{job_id}", "job-x")
        r = client.request("TRACE", path)
        assert r.status_code == 405, path
        assert r.headers["allow"] == ", ".join(sorted(m.upper() for m in item)), path
