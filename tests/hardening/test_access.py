"""Access: admin token, rate limit, CORS and request ids through the real app."""

from __future__ import annotations

import hmac
import logging
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from shoplens.service import auth
from shoplens.service.ratelimit import TokenBuckets
from tests.ar_assets.models import box_glb
from tests.hardening.conftest import AppFactory
from tests.service.helpers import demo_photo


def _admin_calls(c: TestClient, pid: str, headers: dict[str, str]) -> list[Any]:
    return [
        c.put(
            f"/v1/products/{pid}",
            data={"meta": '{"title": "x"}'},
            files={"image": ("a.jpg", demo_photo("lemon"), "image/jpeg")},
            headers=headers,
        ),
        c.delete(f"/v1/products/{pid}", headers=headers),
        c.put(
            f"/v1/products/{pid}/ar",
            files={"file": ("m.glb", box_glb(), "model/gltf-binary")},
            headers=headers,
        ),
        c.delete(f"/v1/products/{pid}/ar", headers=headers),
    ]


def _strip(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body["error"].items() if k != "request_id"}


def test_admin_routes_are_disabled_without_a_token(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, admin_token=None) as c:
        for headers in ({}, {"Authorization": "Bearer anything"}):
            for r in _admin_calls(c, "banana", headers):
                assert r.status_code == 403, r.text
                assert r.json()["error"]["code"] == "forbidden"
        assert c.get("/v1/products/banana").status_code == 200  # reads still work


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dGVzdC1hZG1pbi10b2tlbg=="},
        {"Authorization": "test-admin-token"},
        {"Authorization": "Bearer test-admin-token-and-more"},
        {"Authorization": "Bearer test-admin-toke"},
    ],
)
def test_bad_tokens_are_refused_alike_for_existing_and_unknown_products(
    client: TestClient, headers: dict[str, str]
) -> None:
    known = _admin_calls(client, "banana", headers)
    unknown = _admin_calls(client, "no-such-product-123", headers)
    for a, b in zip(known, unknown, strict=True):
        assert a.status_code == b.status_code == 401
        assert _strip(a.json()) == _strip(b.json())
        assert a.headers["www-authenticate"] == "Bearer"
    assert client.get("/v1/products/banana").status_code == 200  # nothing was deleted


def test_token_is_compared_in_constant_time(
    client: TestClient, admin: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return bool(real(a, b))

    monkeypatch.setattr(hmac, "compare_digest", spy)
    assert auth.hmac is hmac  # type: ignore[attr-defined]
    r = client.delete("/v1/products/no-such-product", headers=admin)
    assert r.status_code == 404  # authorised: now the product's absence may be told
    client.delete("/v1/products/banana", headers={"Authorization": "Bearer nope"})
    assert len(seen) == 2


def test_rate_limit_answers_429_with_retry_after(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, rate_limit_per_minute=3) as c:
        answers = [c.get("/v1/products/banana") for _ in range(4)]
        assert [r.status_code for r in answers] == [200, 200, 200, 429]
        last = answers[-1]
        assert last.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(last.headers["retry-after"]) <= 20
        # Any route counts (search too), health and metrics never do.
        assert (
            c.post("/v1/search", files={"image": ("q.jpg", b"x", "image/jpeg")}).status_code == 429
        )
        for path in ("/healthz", "/readyz", "/metrics"):
            assert c.get(path).status_code == 200


def test_rate_limit_is_off_by_default(client: TestClient) -> None:
    assert all(client.get("/v1/products/banana").status_code == 200 for _ in range(150))


def test_token_bucket_refills_and_is_per_client() -> None:
    now = [0.0]
    buckets = TokenBuckets(60, clock=lambda: now[0], max_clients=3)
    assert all(buckets.take("a") == 0 for _ in range(60))  # the burst
    wait = buckets.take("a")
    assert 0.9 <= wait <= 1.01  # 60/min = one token a second
    assert buckets.take("b") == 0  # another client has its own bucket
    now[0] += 1.0
    assert buckets.take("a") == 0
    for c in "cdef":
        buckets.take(c)
    assert len(buckets) == 3  # idle clients are forgotten, memory stays bounded


def test_cors_is_off_by_default(client: TestClient) -> None:
    r = client.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options(
        "/v1/products/banana",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "DELETE"},
    )
    assert "access-control-allow-origin" not in pre.headers


def test_cors_allows_only_the_configured_origins(make_client: AppFactory, data_dir: Path) -> None:
    with make_client(data_dir, cors_origins=["https://shop.example"]) as c:
        ok = c.get("/v1/products/banana", headers={"Origin": "https://shop.example"})
        assert ok.headers["access-control-allow-origin"] == "https://shop.example"
        exposed = ok.headers["access-control-expose-headers"].lower()
        assert "x-request-id" in exposed and "retry-after" in exposed
        bad = c.get("/v1/products/banana", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in bad.headers
        pre = c.options(
            "/v1/products/banana",
            headers={
                "Origin": "https://shop.example",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "authorization,x-request-id",
            },
        )
        assert pre.status_code == 200
        assert "access-control-allow-credentials" not in pre.headers


def test_request_id_generated_echoed_and_in_errors(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    r = client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    mine = "shop-app:42.abc_DEF"
    r = client.get("/v1/products/banana", headers={"X-Request-ID": mine})
    assert r.headers["x-request-id"] == mine
    with caplog.at_level(logging.INFO, logger="shoplens.access"):
        err = client.get("/v1/products/nope", headers={"X-Request-ID": "err-1"})
    assert err.status_code == 404
    assert err.json()["error"]["request_id"] == "err-1" == err.headers["x-request-id"]
    line = next(r.getMessage() for r in caplog.records if r.name == "shoplens.access")
    assert "GET /v1/products/nope" in line and " 404 " in line and "rid=err-1" in line


@pytest.mark.parametrize(
    "incoming", ["x" * 129, "has space", "a\tb", "semi;colon", 'quote"d', "é", "<script>"]
)
def test_insane_request_ids_are_replaced(client: TestClient, incoming: str) -> None:
    r = client.get("/healthz", headers=[(b"X-Request-ID", incoming.encode("utf-8"))])
    assert r.headers["x-request-id"] != incoming
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_413_from_the_body_limit_carries_the_request_id(
    make_client: AppFactory, data_dir: Path
) -> None:
    with make_client(data_dir, max_request_bytes=1000) as c:
        r = c.post(
            "/v1/search",
            files={"image": ("q.jpg", b"\xff" * 5000, "image/jpeg")},
            headers={"X-Request-ID": "big-1"},
        )
    assert r.status_code == 413
    assert r.json()["error"] == {
        "code": "too_large",
        "message": r.json()["error"]["message"],
        "request_id": "big-1",
    }
