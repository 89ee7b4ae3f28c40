"""Schema-driven fuzzing of every HTTP route: walk the app's own ``/openapi.json``,
generate path, query, header and body values from each operation's parameters
(valid, boundary and hostile), and send them to the real app.

The only acceptable answers are 2xx, 3xx or 4xx with the contract's error body;
afterwards the service is still healthy. ``SHOPLENS_FUZZ_EXAMPLES`` sets the
examples per route (default 25; twelve times that in the ``slow`` variant).

Kept beside ``test_schemathesis.py`` (which checks the answers against the
description) for what schemathesis does not send: real and malformed photos
from the hardening corpus as uploads (so searches and product edits get past
decoding), known product ids, hostile strings (paths, NUL, huge and non-ASCII
values), missing and wrong admin tokens, and unknown query parameters.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from starlette.testclient import TestClient

from shoplens.config import Settings
from tests.hardening.corpus.images import malformed_images
from tests.service.helpers import ADMIN_TOKEN, demo_photo


def _schema() -> dict[str, Any]:
    from shoplens.service.app import create_app

    app = create_app(Settings(data_dir=Path("/nonexistent-shoplens-fuzz")))
    return app.openapi()


SCHEMA = _schema()
OPERATIONS = [
    (method.upper(), path, op)
    for path, item in sorted(SCHEMA["paths"].items())
    for method, op in sorted(item.items())
    if method in ("get", "put", "post", "delete", "head", "patch")
]
EXAMPLES = int(os.environ.get("SHOPLENS_FUZZ_EXAMPLES", "25"))
TRIED: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()

IDS = st.sampled_from(["banana", "lemon", "synthetic-003", "nope", "x" * 129, "", "..", "%00"])
NASTY = st.sampled_from(
    [
        "",
        " ",
        "-1",
        "0",
        "1e309",
        "NaN",
        "-inf",
        "99999999999999999999999",
        "true",
        "null",
        "[]",
        "{}",
        "../../etc/passwd",
        "%2e%2e%2f",
        "\x00",
        "é" * 300,
        "a" * 5000,
        "<script>alert(1)</script>",
        "' OR 1=1 --",
        "0,0,1,1",
        "0.5,0.5,0.9,0.9",
        "brand:acme",
    ]
)
TEXT = st.text(max_size=40)
PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40)
PHOTOS = st.sampled_from(
    [demo_photo("banana"), demo_photo("lemon"), b"", b"\xff\xd8\xff", b"PK\x03\x04"]
    + [data for _, data in malformed_images()[::25]]
)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        node: Any = SCHEMA
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return _resolve(node)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [_resolve(s) for s in schema[key] if s.get("type") != "null"]
            if options:
                return {**options[0], **{k: v for k, v in schema.items() if k != key}}
    return schema


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A value for one parameter: usually of its type (and bounds), sometimes anything."""
    s = _resolve(schema)
    kind = s.get("type")
    typed: st.SearchStrategy[Any]
    if "enum" in s:
        typed = st.sampled_from(s["enum"])
    elif kind == "integer":
        lo, hi = s.get("minimum"), s.get("maximum")
        typed = st.one_of(
            st.integers(min_value=lo, max_value=hi),
            st.sampled_from([v for v in (lo, hi) if v is not None] or [0]),
            st.integers(-(10**12), 10**12),
        )
    elif kind == "number":
        typed = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers())
    elif kind == "boolean":
        typed = st.sampled_from(["true", "false", "1", "0", "yes", "maybe"])
    elif kind == "array":
        typed = st.lists(_value(s.get("items", {})), max_size=4)
    else:
        typed = TEXT
    return st.one_of(typed, typed, NASTY)


def _form(op: dict[str, Any]) -> st.SearchStrategy[tuple[dict[str, Any], dict[str, Any]]]:
    content = op.get("requestBody", {}).get("content", {})
    if "multipart/form-data" not in content and "application/x-www-form-urlencoded" not in content:
        return st.just(({}, {}))
    body = _resolve(next(iter(content.values()))["schema"])
    props = body.get("properties", {})
    data: dict[str, st.SearchStrategy[Any]] = {}
    files: dict[str, st.SearchStrategy[Any]] = {}
    for name, prop in props.items():
        p = _resolve(prop)
        is_file = p.get("format") == "binary" or (
            p.get("type") == "array" and _resolve(p.get("items", {})).get("format") == "binary"
        )
        if is_file:
            files[name] = st.tuples(st.sampled_from(["a.jpg", "m.glb", "x", ""]), PHOTOS)
        elif name == "meta":
            data[name] = st.one_of(
                st.just('{"title": "fuzz", "price": 1.5}'),
                st.dictionaries(TEXT, st.one_of(TEXT, st.integers(), st.none())).map(json.dumps),
                NASTY,
            )
        else:
            data[name] = _value(p)
    return st.tuples(
        st.fixed_dictionaries({}, optional=data), st.fixed_dictionaries({}, optional=files)
    )


def _json_body(op: dict[str, Any]) -> st.SearchStrategy[Any]:
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return st.none()
    body = _resolve(content["application/json"]["schema"])
    fields = {n: _value(p) for n, p in body.get("properties", {}).items()}
    return st.one_of(
        st.fixed_dictionaries({}, optional=fields),
        st.recursive(
            st.none() | st.booleans() | st.integers() | TEXT,
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
            max_leaves=8,
        ),
    )


@pytest.fixture(scope="module")
def fuzz_client(
    hardening_built: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Any
) -> Iterator[TestClient]:
    from shoplens.service.app import create_app

    data_dir = tmp_path_factory.mktemp("fuzz") / "data"
    shutil.copytree(hardening_built, data_dir)
    app = create_app(
        Settings(data_dir=data_dir, admin_token=SecretStr(ADMIN_TOKEN), reload_interval_s=0.5),
        embedder=embedder,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
        assert c.get("/healthz").status_code == 200
        photo = demo_photo("banana")
        r = c.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert r.status_code == 200


def test_schema_has_every_route() -> None:
    paths = {p for _, p, _ in OPERATIONS}
    for expected in (
        "/v1/search",
        "/v1/products/{product_id}",
        "/v1/products/{product_id}/similar",
        "/v1/products/{product_id}/ar",
        "/v1/images/{image_id}",
        "/ar/files/{name}",
        "/healthz",
    ):
        assert expected in paths


def _fuzz(client: TestClient, method: str, path: str, op: dict[str, Any], examples: int) -> None:
    params = op.get("parameters", [])

    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(data=st.data())
    def run(data: st.DataObject) -> None:
        url = path
        query: dict[str, Any] = {}
        headers: dict[str, str] = {}
        for p in params:
            where, name = p["in"], p["name"]
            if where == "path":
                value = data.draw(st.one_of(IDS, TEXT, NASTY))
                url = url.replace("{" + name + "}", quote(str(value), safe="") or "x")
            elif where == "query" and data.draw(st.booleans()):
                query[name] = data.draw(_value(p.get("schema", {})))
            elif where == "header" and data.draw(st.booleans()):
                headers[name] = data.draw(
                    st.text(
                        alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40
                    )
                )
        auth = data.draw(st.sampled_from(["admin", "none", "wrong"]))
        if auth == "admin":
            headers["Authorization"] = f"Bearer {ADMIN_TOKEN}"
        elif auth == "wrong":
            headers["Authorization"] = "Bearer " + data.draw(PRINTABLE)
        if data.draw(st.booleans()):
            query[data.draw(st.sampled_from(["zzz", "k", "crop", "w"]))] = data.draw(NASTY)
        form, files = data.draw(_form(op))
        body = data.draw(_json_body(op))
        kwargs: dict[str, Any] = {"params": query, "headers": headers}
        if files or form:
            kwargs["data"] = form
            kwargs["files"] = {
                k: (v[0], v[1], "application/octet-stream") for k, v in files.items()
            }
        elif body is not None:
            kwargs["json"] = body
        r = client.request(method, url, **kwargs)
        TRIED[f"{method} {path}"] += 1
        STATUSES[r.status_code] += 1
        assert r.status_code < 500, (method, url, kwargs.get("params"), r.status_code, r.text[:300])
        is_json = r.headers.get("content-type", "").startswith("application/json")
        if r.status_code >= 400 and method != "HEAD" and is_json:
            err = r.json().get("error", {})
            assert err.get("code") and err.get("message"), r.text[:300]

    run()


@pytest.mark.parametrize(
    ("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_fuzz_route(fuzz_client: TestClient, method: str, path: str, op: dict[str, Any]) -> None:
    _fuzz(fuzz_client, method, path, op, EXAMPLES)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("method", "path", "op"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_fuzz_route_long(
    fuzz_client: TestClient, method: str, path: str, op: dict[str, Any]
) -> None:
    _fuzz(fuzz_client, method, path, op, 12 * EXAMPLES)


def test_zz_fuzz_summary(fuzz_client: TestClient, capsys: pytest.CaptureFixture[str]) -> None:
    """Runs last in this module: prints what was tried, and the service is still healthy."""
    with capsys.disabled():
        print(f"\nOpenAPI fuzz: {sum(TRIED.values())} requests over {len(TRIED)} operations")
        for op, n in sorted(TRIED.items()):
            print(f"  {n:5d}  {op}")
        print(f"  answers: {dict(sorted(STATUSES.items()))}")
    assert not any(s >= 500 for s in STATUSES)


@pytest.mark.parametrize(
    "manifest", ["é" * 300, "a" * 5000, "~nosuchuser-shoplens/m.csv", "/etc/\x00passwd"]
)
def test_reindex_hostile_manifest_paths_are_400(fuzz_client: TestClient, manifest: str) -> None:
    """Regressions the fuzzer found: these answered 500 (ENAMETOOLONG, unknown ~user)."""
    r = fuzz_client.post(
        "/v1/admin/reindex",
        json={"manifest": manifest},
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "bad_parameter"
