"""Zero-downtime swap: searches keep succeeding while `run_index` publishes a snapshot."""

from __future__ import annotations

import csv
import threading
import time
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from shoplens.config import Settings
from shoplens.models.base import ImageEmbedder
from tests.service.helpers import demo_photo, jpeg_bytes, search, synthetic_photo


def _manifest_with_new_products(src: Path, folder: Path, n: int) -> Path:
    with src.open(encoding="utf-8", newline="") as f:
        rows: list[dict[str, Any]] = list(csv.DictReader(f))
    for row in rows:  # keep the relative photo paths valid from the new folder
        if not Path(row["image"]).is_absolute():
            row["image"] = str(src.parent / row["image"])
    for i in range(n):
        name = folder / f"new-{i}.jpg"
        name.write_bytes(jpeg_bytes(synthetic_photo(5000 + i)))
        rows.append({**rows[-1], "product_id": f"new-{i}", "title": f"New {i}", "image": str(name)})
    out = folder / "manifest-v2.csv"
    with out.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_searches_never_fail_while_a_new_snapshot_is_published(
    client: TestClient,
    data_dir: Path,
    catalog_manifest: Path,
    embedder: ImageEmbedder,
    tmp_path: Path,
) -> None:
    from shoplens.indexer.ops.build import run_index

    before = client.get("/readyz").json()["index_version"]
    manifest = _manifest_with_new_products(catalog_manifest, tmp_path, 5)
    new_photo = (tmp_path / "new-3.jpg").read_bytes()

    stop = threading.Event()
    outcomes: list[tuple[int, str, str]] = []  # (status, index_version, top product)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def searcher(photo: bytes) -> None:
        try:
            while not stop.is_set():
                r = search(client, photo, k=3)
                body = r.json()
                with lock:
                    outcomes.append(
                        (
                            r.status_code,
                            body.get("index_version", ""),
                            body["results"][0]["product_id"],
                        )
                        if r.status_code == 200
                        else (r.status_code, "", str(body))
                    )
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=searcher, args=(p,))
        for p in (demo_photo("banana"), new_photo, demo_photo("kiwi"))
    ]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        report = run_index(Settings(data_dir=data_dir), manifest, embedder=embedder)
        assert report.indexed == 5 and report.unchanged == 300
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if any(o[2] == "new-3" for o in outcomes[-3:]):
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # a few more searches on the new snapshot
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)

    assert not errors, errors
    statuses = {o[0] for o in outcomes}
    assert statuses == {200}, [o for o in outcomes if o[0] != 200][:3]
    versions = [o[1] for o in outcomes]
    assert versions[0] == before and versions[-1] != before
    new_photo_tops = [o[2] for o in outcomes if o[2].startswith("new-") or o[2] == "new-3"]
    assert "new-3" in new_photo_tops  # the new product became searchable without a restart
    assert len(outcomes) >= 6
    after = client.get("/readyz").json()
    assert after["products"] == 305 and after["index_version"] != before
