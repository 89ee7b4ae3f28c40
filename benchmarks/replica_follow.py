"""How fast a replica serves an edit made through another: two real ``shoplens serve``
processes over one data dir, a PUT on A until B answers it, a DELETE on B until
A stops answering it.

Two backends in the same run: PostgreSQL (``SHOPLENS_DATABASE_URL``; replicas
are woken by LISTEN/NOTIFY) and, as the baseline, SQLite (two processes on one
machine sharing catalog.db; they only poll, every ``reload_interval_s`` = 1 s,
the default). PostgreSQL comes from ``--database-url`` or a throw-away server
started like the tests' (``tests/pg.py``: Debian's binaries).

    python -m benchmarks.replica_follow [--rounds 20]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from benchmarks.common import REPO, machine, write_results

TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _photo(seed: int) -> bytes:
    rnd = random.Random(seed)
    image = Image.new("RGB", (96, 96), tuple(rnd.randrange(256) for _ in range(3)))
    for _ in range(6):
        x, y = rnd.randrange(80), rnd.randrange(80)
        colour = tuple(rnd.randrange(256) for _ in range(3))
        image.paste(Image.new("RGB", (16, 16), colour), (x, y))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90)
    return out.getvalue()


@contextmanager
def _replica(env: dict[str, str]) -> Iterator[str]:
    port = _port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shoplens.cli", "serve", "--port", str(port)],
        cwd=REPO,
        env={**env, "SHOPLENS_ADMIN_TOKEN": TOKEN},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"replica on port {port} did not become ready")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(30)


def _until(check: Any, limit_s: float = 10.0) -> float:
    started = time.perf_counter()
    while not check():
        if time.perf_counter() - started > limit_s:
            return float("nan")
        time.sleep(0.002)
    return time.perf_counter() - started


def _stats(xs: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in xs)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[min(len(ms) - 1, int(0.95 * len(ms)))], 1),
        "max_ms": round(ms[-1], 1),
    }


def measure(env: dict[str, str], rounds: int) -> dict[str, Any]:
    put_s: list[float] = []
    delete_s: list[float] = []
    with _replica(env) as a, _replica(env) as b, httpx.Client(timeout=30) as http:
        for i in range(rounds):
            pid = f"follow-{i}"
            files = {"image": ("p.jpg", _photo(i), "image/jpeg")}
            meta = {"meta": json.dumps({"title": f"Follow {i}"})}
            r = http.put(f"{a}/v1/products/{pid}", data=meta, files=files, headers=AUTH)
            r.raise_for_status()
            put_s.append(_until(lambda p=pid: http.get(f"{b}/v1/products/{p}").status_code == 200))
            r = http.delete(f"{b}/v1/products/{pid}", headers=AUTH)
            r.raise_for_status()
            delete_s.append(
                _until(lambda p=pid: http.get(f"{a}/v1/products/{p}").status_code == 404)
            )
    return {"put_on_a_seen_on_b": _stats(put_s), "delete_on_b_seen_on_a": _stats(delete_s)}


def _index(env: dict[str, str]) -> None:
    from shoplens import demo

    subprocess.run(
        [sys.executable, "-m", "shoplens.cli", "index", str(demo.manifest_path())],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--database-url", default=None)
    args = ap.parse_args()
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SHOPLENS_")}
    base_env["SHOPLENS_MODEL_CACHE_DIR"] = os.environ.get(
        "SHOPLENS_MODEL_CACHE_DIR", str(Path.home() / ".cache" / "shoplens" / "models")
    )
    server = None
    url = args.database_url
    if url is None:
        from tests.pg import find_bindir, start_server

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL binaries: pass --database-url")
        server = start_server(bindir)
        url = server.url(server.create_database("bench"))
    results: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory(prefix="shoplens-follow-") as work:
            for name, extra in (
                ("sqlite_polling", {}),
                ("postgres_notify", {"SHOPLENS_DATABASE_URL": url}),
            ):
                env = {**base_env, "SHOPLENS_DATA_DIR": str(Path(work) / name), **extra}
                _index(env)
                results[name] = measure(env, args.rounds)
    finally:
        if server is not None:
            from tests.pg import stop_server

            stop_server(server)
    data = {"machine": machine(), "rounds": args.rounds, "reload_interval_s": 1.0, **results}
    rows = "\n".join(
        f"| {name} | {r['put_on_a_seen_on_b']['p50_ms']} / {r['put_on_a_seen_on_b']['p95_ms']} "
        f"/ {r['put_on_a_seen_on_b']['max_ms']} | {r['delete_on_b_seen_on_a']['p50_ms']} / "
        f"{r['delete_on_b_seen_on_a']['p95_ms']} / {r['delete_on_b_seen_on_a']['max_ms']} |"
        for name, r in results.items()
    )
    md = f"""# Replicas following each other's edits

Two `shoplens serve` processes over one data dir (the demo catalog, default
model); {args.rounds} rounds of a PUT on replica A until replica B answers
`GET /v1/products/ID` with 200, then a DELETE on B until A answers 404. Time
from the write's response to the other replica serving it, polled every 2 ms.
{data["machine"]["cpus"]} CPUs, Python {data["machine"]["python"]}, {data["machine"]["at"]}.

| backend | PUT on A -> B p50 / p95 / max ms | DELETE on B -> A p50 / p95 / max ms |
|---|---|---|
{rows}

`sqlite_polling` is the baseline in the same run: without PostgreSQL, replicas
(here two processes on one machine) only poll, every `reload_interval_s` (1 s).
`postgres_notify`: each catalog commit NOTIFYs `shoplens_catalog`; every
replica's listener wakes its reload loop at once (polling stays as fallback).
"""
    write_results("replica_follow", data, md)
    print(md)


if __name__ == "__main__":
    main()
