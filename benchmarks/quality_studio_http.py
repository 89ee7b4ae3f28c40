"""``POST /v1/search`` latency at concurrency 1 on a studio catalog: re-ranking on vs off.

``python -m benchmarks.quality_studio_http [--grocery G] [--work DIR] [--count N]``

Indexes ``catalog_studio.csv`` once (the studio pipeline), then starts
``shoplens serve`` twice on it, in one run, with the same 2 MP phone photos as
``benchmarks.search_http``: the baseline with ``SHOPLENS_RERANK=off`` (the
head-only ranking) and the default (geometric re-ranking of the top 10).
Sequential requests (concurrency 1): p50/p95 latency and the server's CPU per
request. Writes ``benchmarks/results/quality_studio_http.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from benchmarks.common import DEFAULT_GROCERY, REPO, machine, write_results
from benchmarks.loadgen import run_load, serve
from benchmarks.search_http import make_phone_photos
from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index


def measure(
    name: str, data_dir: Path, env: dict[str, str], payloads: list[bytes], count: int, work: Path
) -> dict[str, Any]:
    # PYTHONPATH: the server must run this checkout's code, not the venv's install.
    full_env = {"PYTHONPATH": str(REPO), **env}
    with serve(data_dir, full_env, work / f"serve-{name}.log") as server:
        url = f"{server.base}/v1/search"
        run_load(url, payloads, concurrency=1, count=len(payloads), time_limit_s=60)  # warm-up
        cpu0 = server.cpu_s()
        res = run_load(url, payloads, concurrency=1, count=count, time_limit_s=120)
        summary = res.summary()
        cpu_ms = (server.cpu_s() - cpu0) * 1e3 / max(1, res.requests + res.errors)
        summary["server_cpu_ms_per_request"] = round(cpu_ms, 2)
    return {"name": name, "env": env, "c1": summary}


def run(grocery: Path, work: Path, photos: int, count: int) -> dict[str, Any]:
    payloads = [p.read_bytes() for p in make_phone_photos(grocery, work / "phone", photos)]
    data_dir = work / "data-studio"
    report = run_index(Settings(data_dir=data_dir), grocery / "catalog_studio.csv")
    configs = [
        ("baseline: SHOPLENS_RERANK=off", {"SHOPLENS_RERANK": "off"}),
        ("default: re-ranking on", {}),
    ]
    load_before = os.getloadavg()
    servers = [measure(n, data_dir, env, payloads, count, work) for n, env in configs]
    return {
        "catalog": {"images": report.vectors, "products": report.products},
        "photos": len(payloads),
        "servers": servers,
        "machine": machine(),
        # The box is shared: its 1-minute load average before and after the run.
        "load_average_1m": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
    }


def markdown(r: dict[str, Any]) -> str:
    rows = "\n".join(
        f"| {s['name']} | {s['c1']['p50_ms']} | {s['c1']['p95_ms']} | {s['c1']['rps']} "
        f"| {s['c1']['server_cpu_ms_per_request']} |"
        for s in r["servers"]
    )
    return f"""# Studio catalog: POST /v1/search at concurrency 1, re-ranking off vs on

`catalog_studio.csv` ({r["catalog"]["images"]} studio photos), {r["photos"]} 2 MP
phone JPEGs (`benchmarks.search_http`'s), `shoplens serve` on loopback, both
servers in one run on the same machine.

| server | p50 ms | p95 ms | req/s | server CPU ms / request |
|---|---:|---:|---:|---:|
{rows}

Machine: {r["machine"]} (shared: compare the rows, not runs); 1-minute load
average before / after the run: {r["load_average_1m"][0]} / {r["load_average_1m"][1]}
on its {r["machine"]["cpus"]} cores.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--grocery", type=Path, default=DEFAULT_GROCERY)
    ap.add_argument("--work", type=Path, default=Path("/tmp/shoplens-bench/studio_http"))
    ap.add_argument("--photos", type=int, default=24)
    ap.add_argument("--count", type=int, default=100)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result = run(args.grocery, args.work, args.photos, args.count)
    j, m = write_results("quality_studio_http", result, markdown(result))
    print(markdown(result))
    print(f"wrote {j} and {m}")


if __name__ == "__main__":
    main()
