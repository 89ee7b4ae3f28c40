"""Soak test: mixed traffic against a real service process for N minutes (loopback only).

    python -m benchmarks.soak --minutes 10

Starts ``uvicorn`` with the real app on 127.0.0.1 (a free port) over the demo
catalog (indexed into a temporary data dir unless ``--data-dir`` is given),
attaches one AR model, then drives search-by-photo, more-like-this, product,
catalog-image and AR-file requests from a few client threads until the time is
up. The server's RSS is sampled every 2 s. Reports errors by status, latency
percentiles per kind and RSS growth after warm-up, into
``benchmarks/results/soak.{json,md}``. Targets: zero 5xx, RSS growth < 10 %.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import REPO, machine, write_results
from shoplens import demo

TOKEN = "soak-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Share of each kind of request (the rest of the budget is search by photo).
MIX = (
    ("search", 0.55),
    ("similar", 0.2),
    ("product", 0.1),
    ("ar_file", 0.1),
    ("image", 0.05),
)


def box_glb(size: float = 0.3) -> bytes:
    """A plain box standing on y=0 (metres, +Y up), as a self-contained GLB."""
    h = size / 2
    corners = [(x, y, z) for x in (-h, h) for y in (0.0, size) for z in (-h, h)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    idx = [i for a, b, c, d in faces for i in (a, b, c, a, c, d)]
    pos = np.array(corners, np.float32).tobytes()
    ind = np.array(idx, np.uint16).tobytes()
    ind += b"\x00" * (-len(ind) % 4)
    doc = {
        "asset": {"version": "2.0", "generator": "shoplens soak"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 1}, "indices": 0}]}],
        "buffers": [{"byteLength": len(ind) + len(pos)}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": len(idx) * 2, "target": 34963},
            {"buffer": 0, "byteOffset": len(ind), "byteLength": len(pos), "target": 34962},
        ],
        "accessors": [
            {"bufferView": 0, "componentType": 5123, "count": len(idx), "type": "SCALAR"},
            {
                "bufferView": 1,
                "componentType": 5126,
                "count": 8,
                "type": "VEC3",
                "min": [-h, 0.0, -h],
                "max": [h, size, h],
            },
        ],
    }
    js = json.dumps(doc, separators=(",", ":")).encode()
    js += b" " * (-len(js) % 4)
    blob = ind + pos
    body = struct.pack("<II", len(js), 0x4E4F534A) + js
    body += struct.pack("<II", len(blob), 0x004E4942) + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def start_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "SHOPLENS_DATA_DIR": str(data_dir),
        "SHOPLENS_ADMIN_TOKEN": TOKEN,
        "PYTHONPATH": str(REPO),
    }
    cmd = [
        sys.executable, "-m", "uvicorn", "--factory", "shoplens.service.app:app_from_env",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
    ]  # fmt: skip
    with open(log, "ab") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=out)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the server was not ready in 180 s: see {log}")


def prepare(base: str) -> dict[str, Any]:
    """Attach an AR model and collect ids to ask for."""
    samples = sorted((demo.DEMO_DIR / "samples").glob("*.jpg"))
    photos = [p.read_bytes() for p in samples]
    with httpx.Client(base_url=base, timeout=300) as c:
        r = c.put(
            "/v1/products/banana/ar",
            files={"file": ("box.glb", box_glb(), "model/gltf-binary")},
            data={"placement": "table"},
            headers=AUTH,
        )
        if r.status_code != 201:
            raise SystemExit(f"AR upload failed: {r.status_code} {r.text[:300]}")
        block = r.json()
        ar_paths = [httpx.URL(block[k]).path for k in ("glb_url", "glb_mobile_url", "usdz_url")
                    if block.get(k)]  # fmt: skip
        found = c.post("/v1/search", params={"k": 50},
                       files={"image": ("q.jpg", photos[0], "image/jpeg")}).json()  # fmt: skip
    products = [h["product_id"] for h in found["results"]]
    images = [httpx.URL(h["image_url"]).path for h in found["results"]]
    return {"photos": photos, "ar_paths": ar_paths, "products": products, "images": images}


class Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: Counter[str] = Counter()
        self.errors: list[str] = []

    def add(self, kind: str, status: int, seconds: float) -> None:
        with self.lock:
            self.latency[kind].append(seconds)
            self.status[str(status)] += 1
            if status >= 500 and len(self.errors) < 20:
                self.errors.append(f"{kind}: {status}")


def client_loop(base: str, plan: dict[str, Any], stats: Stats, stop_at: float, seed: int) -> None:
    rnd = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    with httpx.Client(base_url=base, timeout=60) as c:
        for _ in range(10_000_000):  # bounded; the clock stops it long before
            if time.monotonic() >= stop_at:
                return
            kind = rnd.choices(kinds, weights)[0]
            t0 = time.perf_counter()
            try:
                if kind == "search":
                    photo = rnd.choice(plan["photos"])
                    r = c.post("/v1/search", params={"k": 10},
                               files={"image": ("q.jpg", photo, "image/jpeg")})  # fmt: skip
                elif kind == "similar":
                    pid = rnd.choice(plan["products"])
                    r = c.get(f"/v1/products/{pid}/similar", params={"k": 10})
                elif kind == "product":
                    r = c.get(f"/v1/products/{rnd.choice(plan['products'])}")
                elif kind == "ar_file":
                    r = c.get(rnd.choice(plan["ar_paths"]))
                else:
                    w = rnd.choice((160, 320, 640))
                    accept = rnd.choice(("image/webp", "image/jpeg"))
                    r = c.get(rnd.choice(plan["images"]), params={"w": w},
                              headers={"Accept": accept})  # fmt: skip
                status = r.status_code
            except httpx.HTTPError as exc:
                status = 599
                stats.errors.append(f"{kind}: {exc!r}"[:200])
            stats.add(kind, status, time.perf_counter() - t0)


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--warmup-fraction", type=float, default=0.2)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--name", default="soak", help="results file name")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="shoplens-soak-"))
    data_dir = args.data_dir or work / "data"
    if args.data_dir is None:
        from shoplens.config import Settings
        from shoplens.service.commands import ensure_demo_index

        ensure_demo_index(Settings(data_dir=data_dir))
    port = free_port()
    log = work / "server.log"
    proc = start_server(data_dir, port, log)
    base = f"http://127.0.0.1:{port}"
    try:
        plan = prepare(base)
        stats = Stats()
        duration = args.minutes * 60
        started = time.monotonic()
        stop_at = started + duration
        threads = [
            threading.Thread(target=client_loop, args=(base, plan, stats, stop_at, i), daemon=True)
            for i in range(args.clients)
        ]
        for t in threads:
            t.start()
        samples: list[tuple[float, int]] = []
        while time.monotonic() < stop_at:
            samples.append((round(time.monotonic() - started, 1), rss_bytes(proc.pid)))
            time.sleep(2.0)
        for t in threads:
            t.join(120)
        samples.append((round(time.monotonic() - started, 1), rss_bytes(proc.pid)))
        health = httpx.get(base + "/healthz", timeout=10).status_code
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()

    warm_t = duration * args.warmup_fraction
    after = [r for t, r in samples if t >= warm_t]
    warm_rss = after[0]
    final_rss = float(np.median([r for _, r in samples[-5:]]))
    peak_after = max(after)
    growth = (final_rss - warm_rss) / warm_rss * 100
    all_lat = [x for v in stats.latency.values() for x in v]
    total = len(all_lat)
    five = sum(n for s, n in stats.status.items() if int(s) >= 500)
    data: dict[str, Any] = {
        "minutes": args.minutes,
        "clients": args.clients,
        "requests": total,
        "rps": round(total / duration, 1),
        "status": dict(sorted(stats.status.items())),
        "5xx": five,
        "errors_sample": stats.errors,
        "latency_ms": {
            kind: {"n": len(v), "p50": pct(v, 50), "p95": pct(v, 95), "p99": pct(v, 99)}
            for kind, v in sorted(stats.latency.items())
        }
        | {
            "all": {
                "n": total,
                "p50": pct(all_lat, 50),
                "p95": pct(all_lat, 95),
                "p99": pct(all_lat, 99),
            }
        },
        "rss_mb": {
            "start": round(samples[0][1] / 2**20, 1),
            "after_warmup": round(warm_rss / 2**20, 1),
            "final": round(final_rss / 2**20, 1),
            "peak_after_warmup": round(peak_after / 2**20, 1),
            "growth_after_warmup_pct": round(growth, 2),
            "warmup_s": warm_t,
            "samples": [
                (t, round(r / 2**20, 1)) for t, r in samples[:: max(1, len(samples) // 60)]
            ],
        },
        "healthz_after": health,
        "targets": {"zero_5xx": five == 0, "rss_growth_under_10pct": growth < 10},
        "machine": machine(),
    }
    lat = data["latency_ms"]
    rows = "\n".join(
        f"| {k} | {v['n']} | {v['p50']} | {v['p95']} | {v['p99']} |" for k, v in lat.items()
    )
    rss = data["rss_mb"]
    md = f"""# Soak: mixed traffic for {args.minutes:g} minutes

`python -m benchmarks.soak --minutes {args.minutes:g}` — one `uvicorn` process of the real
app on 127.0.0.1 over the demo catalog (81 products, one AR model), {args.clients} client
threads back to back: search by photo {MIX[0][1]:.0%}, more-like-this {MIX[1][1]:.0%},
product {MIX[2][1]:.0%}, AR files {MIX[3][1]:.0%}, catalog images {MIX[4][1]:.0%}.
Machine: {data["machine"]["cpus"]} CPUs shared with other work (timings are indicative).

- requests: **{total}** ({data["rps"]} req/s), answers by status: `{data["status"]}`
- **5xx: {five}**; `/healthz` afterwards: {health}
- RSS: start {rss["start"]} MB, after warm-up ({warm_t:.0f} s) {rss["after_warmup"]} MB,
  final {rss["final"]} MB, peak after warm-up {rss["peak_after_warmup"]} MB →
  **growth after warm-up {rss["growth_after_warmup_pct"]} %** (target < 10 %)

| kind | n | p50 ms | p95 ms | p99 ms |
|---|---|---|---|---|
{rows}
"""
    j, m = write_results(args.name, data, md)
    print(md)
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
