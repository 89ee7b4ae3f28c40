"""Faults: the service SIGKILLed mid-write, a corrupt snapshot published while serving,
and SIGTERM with a request in flight.

(SIGKILL of ``shoplens index`` at random points is tested in tests/indexer/ops/test_resume.py.)
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from shoplens.config import Settings
from shoplens.errors import SnapshotError
from shoplens.indexer.serving.snapshot import CURRENT, load_snapshot
from tests.ar_assets.models import box_glb
from tests.hardening.conftest import AppFactory
from tests.hardening.server import Server
from tests.service.helpers import ADMIN_TOKEN, demo_photo, jpeg_bytes, search, synthetic_photo

AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _integrity(db: Path) -> str:
    con = sqlite3.connect(db)
    try:
        return str(con.execute("PRAGMA integrity_check").fetchone()[0])
    finally:
        con.close()


class Writer(threading.Thread):
    """PUTs products (and AR models) one after another; records what was acknowledged."""

    def __init__(self, url: str, tag: str, ar: bool) -> None:
        super().__init__(daemon=True)
        self.url, self.tag, self.ar = url, tag, ar
        self.stop = threading.Event()
        self.products: dict[str, int] = {}  # acknowledged product id -> seed of its photo
        self.models: dict[str, bytes] = {}  # acknowledged AR uploads
        self.sent = 0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=60.0) as c:
            for i in range(500):
                if self.stop.is_set():
                    return
                self.sent += 1
                try:
                    if self.ar and i % 3 == 2:
                        # A model attaches to a product of the catalog: the one just made.
                        pid = f"kill-{self.tag}-{i - 1}"
                        if pid not in self.products:
                            continue
                        data = box_glb(size=0.2 + i / 1000)
                        r = c.put(
                            f"/v1/products/{pid}/ar",
                            files={"file": ("m.glb", data, "model/gltf-binary")},
                            data={"placement": "table"},
                            headers=AUTH,
                        )
                        if r.status_code == 201:
                            self.models[pid] = data
                        continue
                    pid = f"kill-{self.tag}-{i}"
                    seed = 50_000 + hash((self.tag, i)) % 1_000_000
                    r = c.put(
                        f"/v1/products/{pid}",
                        data={"meta": json.dumps({"title": pid, "price": i, "category": "K"})},
                        files={"image": ("p.jpg", jpeg_bytes(synthetic_photo(seed)), "image/jpeg")},
                        headers=AUTH,
                    )
                    if r.status_code in (200, 201):
                        self.products[pid] = seed
                except httpx.HTTPError:
                    return  # the server is gone: what was not answered was not acknowledged


def _kill_rounds(data_dir: Path, tmp_path: Path, rounds: int, seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    products: dict[str, int] = {}
    models: dict[str, bytes] = {}
    sent = 0
    for n in range(rounds):
        server = Server(data_dir, tmp_path / "server.log").start()
        writer = Writer(server.url, f"r{n}", ar=True)
        writer.start()
        time.sleep(rnd.uniform(0.5, 4.0))
        server.kill()  # SIGKILL, wherever the writes are
        writer.stop.set()
        writer.join(60)
        products.update(writer.products)
        models.update(writer.models)
        sent += writer.sent
    return {"products": products, "models": models, "sent": sent}


def _check_after_restart(data_dir: Path, tmp_path: Path, done: dict[str, Any]) -> dict[str, int]:
    assert _integrity(data_dir / "catalog.db") == "ok"
    settings = Settings(data_dir=data_dir)
    load_snapshot(settings, None)  # the published index is valid (checksums verified)
    server = Server(data_dir, tmp_path / "server.log").start()
    lost: list[str] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60.0) as c:
            for pid, seed in done["products"].items():
                r = c.get(f"/v1/products/{pid}")
                if r.status_code != 200:
                    lost.append(pid)
                    continue
                found = c.post(
                    "/v1/search",
                    params={"k": 1, "category": "K"},
                    files={"image": ("q.jpg", jpeg_bytes(synthetic_photo(seed)), "image/jpeg")},
                )
                assert found.status_code == 200
            for pid, data in done["models"].items():
                r = c.get(f"/v1/products/{pid}/ar")
                if r.status_code != 200:
                    lost.append(pid)
                    continue
                path = httpx.URL(r.json()["glb_url"]).path
                assert c.get(path).content == data, pid
            # Writes work again after the restart (a rerun completes).
            r = c.put(
                "/v1/products/after-restart",
                data={"meta": json.dumps({"title": "after"})},
                files={"image": ("p.jpg", demo_photo("lemon"), "image/jpeg")},
                headers=AUTH,
            )
            assert r.status_code in (200, 201), r.text
            assert c.get("/healthz").status_code == 200
    finally:
        server.signal(signal.SIGTERM)
        server.wait(30)
    assert not lost, f"acknowledged writes lost after SIGKILL: {lost}"
    assert _integrity(data_dir / "catalog.db") == "ok"
    return {"acknowledged": len(done["products"]) + len(done["models"]), "lost": len(lost)}


def test_sigkill_service_during_writes(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _kill_rounds(data_dir, tmp_path, rounds=2, seed=20261125)
    counts = _check_after_restart(data_dir, tmp_path, done)
    with capsys.disabled():
        print(f"\nSIGKILL x2 during writes: sent {done['sent']}, {counts}")
    assert counts["acknowledged"] > 0


@pytest.mark.slow
def test_sigkill_service_during_writes_many_rounds(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done = _kill_rounds(data_dir, tmp_path, rounds=8, seed=7)
    counts = _check_after_restart(data_dir, tmp_path, done)
    with capsys.disabled():
        print(f"\nSIGKILL x8 during writes: sent {done['sent']}, {counts}")
    assert counts["lost"] == 0


def test_sigterm_finishes_the_request_in_flight(data_dir: Path, tmp_path: Path) -> None:
    server = Server(data_dir, tmp_path / "server.log").start()
    answer: dict[str, Any] = {}

    def slow() -> None:
        try:
            r = httpx.get(server.url + "/test/slow", params={"s": 3}, timeout=30)
            answer["status"], answer["body"] = r.status_code, r.json()
        except httpx.HTTPError as exc:
            answer["error"] = repr(exc)

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(1.0)
    server.signal(signal.SIGTERM)
    t.join(30)
    code = server.wait(30)
    assert answer.get("status") == 200, answer
    assert answer["body"] == {"slept": 3.0}
    # uvicorn re-raises the signal once shut down: -SIGTERM (or 0 on older versions).
    assert code in (0, -signal.SIGTERM)
    log = (tmp_path / "server.log").read_text()
    assert "Application shutdown complete" in log
    # New connections are refused once it has stopped.
    with pytest.raises(httpx.HTTPError):
        httpx.get(server.url + "/healthz", timeout=2)


def _publish_corrupt_copy(data_dir: Path, how: str) -> str:
    """Copy the published snapshot under a new id, damage one file, point CURRENT at it."""
    snaps = data_dir / "snapshots"
    cur = (snaps / CURRENT).read_text().strip()
    bad_id = "29991231T000000000000Z-bad000"  # sorts after every real id
    shutil.copytree(snaps / cur, snaps / bad_id)
    facts = json.loads((snaps / bad_id / "facts.json").read_text())
    name = max(facts["files"], key=lambda n: (snaps / bad_id / n).stat().st_size)
    target = snaps / bad_id / name
    data = target.read_bytes()
    if how == "truncated":
        target.write_bytes(data[: len(data) // 2])
    elif how == "bitflip":
        b = bytearray(data)
        b[len(b) // 2] ^= 0x40
        target.write_bytes(bytes(b))
    else:  # missing
        target.unlink()
    (snaps / CURRENT).write_text(bad_id + "\n")
    return bad_id


@pytest.mark.parametrize("how", ["truncated", "bitflip", "missing"])
def test_corrupt_snapshot_is_refused_and_the_old_one_keeps_serving(
    make_client: AppFactory,
    data_dir: Path,
    how: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    photo = demo_photo("banana")
    with make_client(data_dir) as client:
        before = search(client, photo, k=3).json()
        bad_id = _publish_corrupt_copy(data_dir, how)
        time.sleep(1.0)  # several reload ticks (0.2 s)
        after = search(client, photo, k=3)
        assert after.status_code == 200
        assert after.json()["index_version"] == before["index_version"]
        assert after.json()["results"][0]["product_id"] == "banana"
        assert client.get("/readyz").status_code == 200
    messages = [r.getMessage() for r in caplog.records]
    assert any(bad_id in m and "still serving" in m for m in messages), messages
    with pytest.raises(SnapshotError, match=r"corrupt|missing"):
        load_snapshot(Settings(data_dir=data_dir), None)
