"""GET /v1/search?q= with the default kind of model (no text tower): words matched
against product text with SQLite FTS5, and POST /v1/search refined by words.

The stand-in model serves: which products match words does not depend on what
the model sees, only the refined photo ranking does, and that is asserted only
as "a subset, in photo order".
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo
from tests.service.jobs_helpers import AUTH, finished, wait_job


def words(client: TestClient, q: str, **params: Any) -> Any:
    return client.get("/v1/search", params={"q": q, **params})


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [x["product_id"] for x in response.json()["results"]]


def put(client: TestClient, product_id: str, meta: dict[str, Any], seed: int) -> None:
    r = client.put(
        f"/v1/products/{product_id}",
        data={"meta": json.dumps(meta)},
        files={"image": ("p.jpg", jpeg_bytes(synthetic_photo(seed)), "image/jpeg")},
        headers=AUTH,
    )
    assert r.status_code in (200, 201), r.text


def test_words_find_products_without_a_text_model(client: TestClient) -> None:
    r = words(client, "banana")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"search_id", "results", "took_ms", "model", "index_version"}
    top = body["results"][0]
    assert top["product_id"] == "banana" and top["title"] == "Banana"
    assert top["image_url"].startswith("http://testserver/v1/images/")
    assert client.get(top["image_url"]).status_code == 200
    assert 0.5 < top["score"] <= 1.0
    assert 'shoplens_search_seconds_count{kind="words"} 1.0' in client.get("/metrics").text


def test_a_title_match_beats_a_description_match(client: TestClient) -> None:
    put(client, "quokka-mug", {"title": "Quokka mug", "category": "Kitchen"}, 1)
    put(
        client,
        "plain-cup",
        {"title": "Coffee cup", "category": "Kitchen", "description": "a cup with a quokka"},
        2,
    )
    put(client, "quokka-poster", {"title": "Poster", "category": "Quokka"}, 3)
    assert ids(words(client, "quokka")) == ["quokka-mug", "quokka-poster", "plain-cup"]
    # In the demo catalog: every product with "orange" in its title ranks above the
    # carrots, whose description alone says "orange".
    found = ids(words(client, "orange", k=50))
    titled = [p for p in found if "orange" in p]
    assert len(titled) >= 5 and "carrots" in found
    assert max(found.index(p) for p in titled) < found.index("carrots")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("ban", "banana"),  # a prefix
        ("pineapp", "pineapple"),
        ("bananas", "banana"),  # an English plural
        ("BANANA", "banana"),  # any case
        ("cantaloup", "cantaloupe-melon"),
    ],
)
def test_prefixes_plurals_and_case(client: TestClient, q: str, expected: str) -> None:
    assert ids(words(client, q))[0] == expected


def test_accents_are_ignored_both_ways(client: TestClient) -> None:
    # "Arlagårdar" is in the descriptions of the Arla products.
    plain = ids(words(client, "arlagardar", k=50))
    assert plain and all(p.startswith("arla-") for p in plain)
    assert ids(words(client, "ARLAGÅRDAR", k=50)) == plain
    put(client, "creme", {"title": "Crème fraîche", "category": "Dairy"}, 4)
    assert ids(words(client, "creme fraiche"))[0] == "creme"


def test_every_word_first_then_some(client: TestClient) -> None:
    results = words(client, "orange juice", k=40).json()["results"]
    scores = [x["score"] for x in results]
    assert scores == sorted(scores, reverse=True)
    both = [x["product_id"] for x in results if x["score"] > 0.5]
    assert set(both) >= {"bravo-orange-juice", "god-morgon-orange-juice"}
    assert all("juice" in p for p in both)  # every word: orange and juice
    some = [x["product_id"] for x in results if x["score"] <= 0.5]
    assert "orange" in some and "bravo-apple-juice" in some  # one of the words
    # min_score=0.5 keeps the products matching every word.
    assert ids(words(client, "orange juice", k=40, min_score=0.5)) == both


def test_filters_and_k(client: TestClient) -> None:
    juice = words(client, "juice", category="Juice", in_stock="true", max_price=30, k=50)
    results = juice.json()["results"]
    assert results
    assert all(x["category"] == "Juice" and x["in_stock"] and x["price"] <= 30 for x in results)
    # 219 generated products are called "Synthetic thing N": k is honoured up to 100.
    assert len(ids(words(client, "synthetic", k=5))) == 5
    assert len(ids(words(client, "synthetic", k=100))) == 100
    # The three "Rare" ones rank last (no category match) and are still found.
    rare = ids(words(client, "synthetic", category="Rare", k=10))
    assert sorted(rare) == ["synthetic-007", "synthetic-100", "synthetic-200"]
    assert ids(words(client, "thing", attr="brand:grocer")) == []
    assert len(ids(words(client, "thing", attr="brand:acme", min_price=990))) == 3
    assert ids(words(client, "thing", min_price=10_000)) == []


def test_edits_and_deletes_are_searchable_at_once(client: TestClient) -> None:
    assert ids(words(client, "zanzibar")) == []
    put(client, "kettle-1", {"title": "Zanzibar kettle", "colour": "teal"}, 5)
    assert ids(words(client, "zanzibar")) == ["kettle-1"]
    assert ids(words(client, "teal")) == ["kettle-1"]  # attribute values are words too
    put(client, "kettle-1", {"title": "Mombasa kettle", "colour": "teal"}, 5)
    assert ids(words(client, "zanzibar")) == []
    assert ids(words(client, "mombasa")) == ["kettle-1"]
    assert client.delete("/v1/products/kettle-1", headers=AUTH).status_code == 204
    assert ids(words(client, "mombasa")) == []
    assert ids(words(client, "banana"))[0] == "banana"  # the others stay


def _manifest(folder: Path, rows: list[tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["product_id", "image", "title", "category"])
        for i, (pid, title) in enumerate(rows):
            (folder / f"{pid}.jpg").write_bytes(jpeg_bytes(synthetic_photo(7000 + i)))
            w.writerow([pid, f"{pid}.jpg", title, "Teaware"])
    return manifest


def _reindex(client: TestClient, manifest: Path, prune: bool) -> dict[str, Any]:
    r = client.post(
        "/v1/admin/reindex", json={"manifest": str(manifest), "prune": prune}, headers=AUTH
    )
    assert r.status_code == 202, r.text
    job = wait_job(lambda p: client.get(p, headers=AUTH), r.json()["job_id"], 180, finished)
    assert job["state"] == "succeeded", job
    return job


def test_reindex_runs_keep_the_words_current(client: TestClient, tmp_path: Path) -> None:
    first = _manifest(tmp_path / "a", [("w-1", "Wombat teapot"), ("w-2", "Wombat kettle")])
    _reindex(client, first, prune=False)
    assert sorted(ids(words(client, "wombat"))) == ["w-1", "w-2"]
    second = _manifest(tmp_path / "b", [("w-1", "Platypus teapot")])
    _reindex(client, second, prune=True)
    assert ids(words(client, "wombat")) == []
    assert ids(words(client, "platypus")) == ["w-1"]
    assert ids(words(client, "banana")) == []  # pruned with the rest of the catalog


def test_a_photo_search_refined_by_words(client: TestClient) -> None:
    photo = demo_photo("banana")
    plain = {x["product_id"]: x["score"] for x in search(client, photo, k=100).json()["results"]}
    milk = set(ids(words(client, "milk", k=100)))
    refined = search(client, photo, q="milk", k=100).json()["results"]
    assert refined and {x["product_id"] for x in refined} == milk  # only what the words match
    # ...ranked by the photo: its cosine scores, best first.
    scores = [x["score"] for x in refined]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    shared = [x for x in refined if x["product_id"] in plain]
    assert shared and all(x["score"] == plain[x["product_id"]] for x in shared)
    # Every word when some product has them all, else any word.
    assert set(ids(search(client, photo, q="oat milk", k=100))) == set(
        ids(words(client, "oat milk", k=100, min_score=0.5))
    )
    either = set(ids(search(client, photo, q="zucchini banana", k=100)))
    assert either == {"zucchini", "banana"}
    assert ids(search(client, photo, q="zzyzx")) == []
    # Filters still apply, and a blank q is a plain photo search.
    assert ids(search(client, photo, q="milk", category="Oat Milk")) == ["oatly-oat-milk"]
    assert ids(search(client, photo, q="  ", k=100)) == list(plain)


@pytest.mark.parametrize(
    "q",
    [
        '"banana',
        "banana*",
        "NEAR(banana kiwi)",
        "banana OR",
        "AND",
        "title:banana",
        "^banana",
        "banana -kiwi",
        "(banana",
        "'; DROP TABLE idx_products; --",
        "🍌 banana",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z",
        "é",
        "x" * 500,
    ],
)
def test_odd_queries_never_500(client: TestClient, q: str) -> None:
    r = words(client, q)
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["results"], list)
    r = search(client, demo_photo("kiwi"), q=q)
    assert r.status_code == 200, r.text


def test_queries_without_words_are_400(client: TestClient) -> None:
    for q in ("", "   ", "***", '"()"', "-_-"):
        r = words(client, q)
        assert r.status_code == 400, (q, r.text)
        assert r.json()["error"]["code"] == "bad_parameter"
        assert "q" in r.json()["error"]["message"]
    r = words(client, "x" * 501)
    assert r.status_code == 400 and "q" in r.json()["error"]["message"]
    r = search(client, demo_photo("kiwi"), q="x" * 501)
    assert r.status_code == 400 and "q" in r.json()["error"]["message"]
    r = search(client, demo_photo("kiwi"), q="***")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_parameter"


def test_the_openapi_says_what_the_score_means(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    get = spec["paths"]["/v1/search"]["get"]
    assert "score" in get["description"] and "(0, 1]" in get["description"]
    post_params = {p["name"] for p in spec["paths"]["/v1/search"]["post"]["parameters"]}
    assert "q" in post_params
    score = spec["components"]["schemas"]["SearchResultItem"]["properties"]["score"]
    assert "word search" in score["description"]
