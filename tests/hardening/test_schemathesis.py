"""Schemathesis against the real app: every operation of ``/openapi.json`` is
exercised in-process (its examples, coverage and fuzzing phases) over a real
indexed catalog, with every check but ``positive_data_acceptance`` (a
well-formed photo of nothing in particular is still a 415/422 here).

The checks are what a generated client relies on: answers only with documented
statuses, content types and schemas; invalid input refused; unsupported methods
answered 405 with an ``Allow`` listing exactly the documented methods; admin
routes refusing a request without the token. Admin routes are called with the
admin token. A fixed seed and a bounded number of examples keep it repeatable
(``SHOPLENS_SCHEMATHESIS_EXAMPLES`` raises the bound for a longer hunt).
"""

from __future__ import annotations

import csv
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.config import SchemathesisConfig
from schemathesis.core.failures import AcceptedNegativeData, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from starlette.testclient import TestClient

from shoplens import demo
from shoplens.config import Settings
from shoplens.indexer.catalog.photos import image_id_for
from tests.service.helpers import ADMIN_TOKEN, demo_photo

SEED = 16
EXAMPLES = int(os.environ.get("SHOPLENS_SCHEMATHESIS_EXAMPLES", "40"))
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
# Generated ids almost never exist; half the time a real one is used instead, so
# the fuzzed filters, widths and variants also reach the paths that answer 200.
_DEMO_ROWS = list(csv.DictReader(demo.manifest_path().read_text(encoding="utf-8").splitlines()))
KNOWN_PRODUCTS = [row["product_id"] for row in _DEMO_ROWS[:8]] + ["synthetic-003"]
KNOWN_IMAGES = [
    image_id_for(hashlib.sha256((demo.DEMO_DIR / row["image"]).read_bytes()).hexdigest())
    for row in _DEMO_ROWS[:4]
]

load_all_checks()
CHECKED = [c for c in CHECKS.get_all() if getattr(c, "__name__", "") != "positive_data_acceptance"]


def _schema() -> Any:
    """The app's own description (no lifespan needed to build it); requests go to
    ``api_app``, the same app over a real data dir."""
    from shoplens.service.app import create_app

    app = create_app(Settings(data_dir=Path("/nonexistent-shoplens-schemathesis")))
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "generation": {"max-examples": EXAMPLES},
            "headers": ADMIN,
            "dictionaries": {
                "products": {"values": KNOWN_PRODUCTS},
                "images": {"values": KNOWN_IMAGES},
            },
            "parameters": {
                "path.product_id": {"dictionary": "products", "probability": 0.5},
                "path.image_id": {"dictionary": "images", "probability": 0.5},
            },
        }
    )
    return schemathesis.openapi.from_dict(app.openapi(), config=config)


schema = _schema()


@pytest.fixture(scope="module")
def api_app(hardening_built: Path, tmp_path_factory: pytest.TempPathFactory, embedder: Any) -> Any:
    """The real app over a copy of the indexed catalog. Schemathesis runs its lifespan
    on a test's first request and ends it when the test ends (its pytest plugin), so
    each operation starts the service afresh over what the earlier ones left."""
    from shoplens.service.app import create_app

    data_dir = tmp_path_factory.mktemp("schemathesis") / "data"
    shutil.copytree(hardening_built, data_dir)
    app = create_app(
        Settings(data_dir=data_dir, admin_token=SecretStr(ADMIN_TOKEN), reload_interval_s=0.5),
        embedder=embedder,
    )
    return app


@schema.parametrize()
@settings(deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_api_matches_its_description(case: Any, api_app: Any) -> None:
    # The schema was loaded at collection, before the app existed: point it at the app,
    # so that the probes some checks send (ignored_auth: without the token) reach it too.
    case.operation.schema.app = api_app
    try:
        case.call_and_validate(checks=CHECKED, app=api_app)
    except FailureGroup as group:
        if not _only_unobservable_query_negation(case, group):
            raise


def _wire(value: Any) -> list[str]:
    """A generated query value as the strings the server receives."""
    items = value if isinstance(value, list) else [value]
    return ["true" if v is True else "false" if v is False else str(v) for v in items]


def _valid_on_wire(schema: dict[str, Any], values: list[str]) -> bool:
    """Whether the strings a query parameter arrives as satisfy its declared schema: a
    string option with one value, or an array-of-strings option."""
    for option in schema.get("anyOf", [schema]):
        if option.get("type") == "string" and len(values) == 1:
            candidate: Any = values[0]
        elif option.get("type") == "array" and option.get("items", {}).get("type") == "string":
            candidate = values
        else:
            continue
        if jsonschema_rs.validator_for(option).is_valid(candidate):
            return True
    return False


def _only_unobservable_query_negation(case: Any, group: FailureGroup) -> bool:
    """A known schemathesis false positive (its issues #3962, #4600): a "negative" query
    value that arrives as a valid string (``q=false``: a boolean, or a one-item array,
    serialises to a string the schema takes) and so is rightly accepted. Only when the
    query is the only negative part and every parameter sent is valid as received;
    any other accepted negative data still fails."""
    if not all(isinstance(f, AcceptedNegativeData) for f in group.exceptions):
        return False
    negative = [loc for loc, c in case.meta.components.items() if c.mode.is_negative]
    if negative != [ParameterLocation.QUERY]:
        return False
    declared = {
        p["name"]: p.get("schema", {})
        for p in case.operation.definition.raw.get("parameters", [])
        if p.get("in") == "query"
    }
    sent = case.query or {}
    return bool(sent) and all(
        name in declared and _valid_on_wire(declared[name], _wire(value))
        for name, value in sent.items()
    )


def test_zz_app_still_healthy_after_the_run(api_app: Any) -> None:
    """Runs after the fuzzing (file order): the service starts over what the run left
    (edits, deletions, refused uploads), is ready and finds a photo's product."""
    with TestClient(api_app) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        photo = demo_photo("banana")
        r = client.post("/v1/search", files={"image": ("q.jpg", photo, "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["results"]
