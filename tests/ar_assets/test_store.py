"""The content-addressed store: atomic files, row swaps, garbage collection under
concurrency, on SQLite and on PostgreSQL (``db_target``; two stores over one
database stand for two replicas)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from shoplens.ar_assets.store import AssetRow, AssetStore


def _file(tmp: Path, content: bytes) -> tuple[str, Path]:
    sha = hashlib.sha256(content).hexdigest()
    p = tmp / f"staged-{sha[:8]}-{threading.get_ident()}"
    p.write_bytes(content)
    return sha, p


def _row(pid: str, sha: str, variant: str = "default") -> AssetRow:
    return AssetRow(
        product_id=pid, variant=variant, placement="floor", original_name="m.glb",
        source_sha=sha, source_ext="glb", glb_sha=sha, mobile_sha=sha, usdz_sha=None,
        dims={"x": 1.0, "y": 1.0, "z": 1.0}, triangles=1, bytes=1, mobile_bytes=1,
        material_variants=[], report={}, created_at=time.time(),
    )  # fmt: skip


def test_replace_and_delete_collect_only_unreferenced(
    tmp_path: Path, db_target: str | None
) -> None:
    store = AssetStore(tmp_path / "files", db_target or tmp_path / "db.sqlite")
    a_sha, a = _file(tmp_path, b"model A")
    b_sha, b = _file(tmp_path, b"model B")
    store.save(_row("p1", a_sha), {(a_sha, "glb"): a})
    store.save(_row("p2", a_sha), {(a_sha, "glb"): a})
    store.save(_row("p1", b_sha), {(b_sha, "glb"): b})  # replace: A still used by p2
    assert store.path(a_sha, "glb").read_bytes() == b"model A"
    assert store.delete("p2") == 1
    assert not store.path(a_sha, "glb").exists()  # now unreferenced
    assert store.path(b_sha, "glb").exists()
    assert [r.glb_sha for r in store.rows(["p1", "p2"])] == [b_sha]
    assert not list((tmp_path / "files").glob(".tmp-*"))


def test_concurrent_saves_and_deletes_never_lose_a_referenced_file(
    tmp_path: Path, db_target: str | None
) -> None:
    target = db_target or tmp_path / "db.sqlite"
    # Two stores over one database and one files dir: two processes, or two replicas.
    stores = [AssetStore(tmp_path / "files", target) for _ in range(2)]
    store = stores[0]
    contents = [f"model {i}".encode() for i in range(3)]
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(30):
                sha, p = _file(tmp_path, contents[(n + i) % 3])
                pid = f"p{(n + i) % 4}"
                if i % 7 == 6:
                    stores[n % 2].delete(pid)
                else:
                    stores[n % 2].save(_row(pid, sha), {(sha, "glb"): p})
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    rows = store.rows([f"p{i}" for i in range(4)])
    for r in rows:
        assert store.path(r.glb_sha, "glb").is_file()
    on_disk = {p.name.split(".")[0] for p in (tmp_path / "files").glob("*.glb")}
    assert on_disk == {r.glb_sha for r in rows}
    for s in stores:
        s.close()


def test_a_replica_sees_another_replicas_asset_within_a_second(tmp_path: Path, pg_url: str) -> None:
    """Over PostgreSQL rows are cached per process (they are read on every search
    answer): a save or delete on another replica shows within the cache's check."""
    a = AssetStore(tmp_path / "files", pg_url)
    b = AssetStore(tmp_path / "files", pg_url)
    try:
        sha, p = _file(tmp_path, b"model")
        assert a.rows(["p1"]) == []  # cached: p1 has no asset
        b.save(_row("p1", sha), {(sha, "glb"): p})
        assert [r.glb_sha for r in b.rows(["p1"])] == [sha]  # its own write: at once

        def seen_by_a(want: int) -> float:
            start = time.monotonic()
            while len(a.rows(["p1", "p2"])) != want:
                assert time.monotonic() - start < 5, "replica A never saw the change"
                time.sleep(0.02)
            return time.monotonic() - start

        assert seen_by_a(1) < 1.0
        b.delete("p1")
        assert seen_by_a(0) < 1.0
    finally:
        a.close()
        b.close()
