"""A small bounded HTTP load generator (httpx async) and a `shoplens serve` subprocess.

Every load loop stops at ``count`` requests or ``time_limit_s`` seconds,
whichever comes first; the server listens on 127.0.0.1 only and is stopped
(by its own pid) when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


@dataclass
class LoadResult:
    concurrency: int
    requests: int = 0
    errors: int = 0
    wall_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    server_ms: list[float] = field(default_factory=list)  # the service's own took_ms
    statuses: Counter[int] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        lat = np.asarray(self.latencies_ms or [float("nan")])
        srv = np.asarray(self.server_ms or [float("nan")])
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "wall_s": round(self.wall_s, 3),
            "rps": round(self.requests / max(self.wall_s, 1e-9), 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p95_ms": round(float(np.percentile(lat, 95)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "mean_ms": round(float(lat.mean()), 2),
            "server_took_p50_ms": round(float(np.percentile(srv, 50)), 2),
            "outside_handler_p50_ms": round(
                float(np.percentile(lat[: len(srv)] - srv[: len(lat)], 50)), 2
            )
            if self.server_ms
            else None,
        }


async def _load(
    url: str,
    payloads: Sequence[bytes],
    concurrency: int,
    count: int,
    time_limit_s: float,
    params: Mapping[str, str],
) -> LoadResult:
    result = LoadResult(concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    issued = 0
    deadline = time.monotonic() + time_limit_s

    async with httpx.AsyncClient(limits=limits, timeout=60.0) as client:

        async def worker() -> None:
            nonlocal issued
            while issued < count and time.monotonic() < deadline:
                data = payloads[issued % len(payloads)]
                issued += 1
                t = time.perf_counter()
                try:
                    r = await client.post(
                        url, params=params, files={"image": ("photo.jpg", data, "image/jpeg")}
                    )
                except httpx.HTTPError:
                    result.errors += 1
                    continue
                ms = (time.perf_counter() - t) * 1e3
                result.statuses[r.status_code] += 1
                if r.status_code != 200:
                    result.errors += 1
                    continue
                result.latencies_ms.append(ms)
                took = r.json().get("took_ms")
                if isinstance(took, int | float):
                    result.server_ms.append(float(took))
                result.requests += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def run_load(
    url: str,
    payloads: Sequence[bytes],
    *,
    concurrency: int,
    count: int,
    time_limit_s: float,
    params: Mapping[str, str] | None = None,
) -> LoadResult:
    """POST ``payloads`` (round robin) as multipart ``image`` with ``concurrency`` clients."""
    return asyncio.run(_load(url, payloads, concurrency, count, time_limit_s, params or {}))


def time_get(url: str, count: int) -> list[float]:
    """Latencies (ms) of ``count`` sequential GETs on one kept-alive connection."""
    out = []
    with httpx.Client(timeout=30.0) as client:
        for _ in range(count):
            t = time.perf_counter()
            client.get(url).raise_for_status()
            out.append((time.perf_counter() - t) * 1e3)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Server:
    base: str
    pid: int

    def cpu_s(self) -> float:
        """User + system CPU seconds the server process has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve(
    data_dir: Path, env: Mapping[str, str], log_path: Path, ready_timeout_s: float = 180.0
) -> Iterator[Server]:
    """``shoplens serve`` on a free loopback port, yielded once /readyz answers 200."""
    port = free_port()
    full_env = {**os.environ, **env, "SHOPLENS_DATA_DIR": str(data_dir)}
    script = Path(sys.executable).parent / "shoplens"  # the console script of this venv
    launcher = [str(script)] if script.is_file() else [sys.executable, "-m", "shoplens.cli"]
    cmd = [*launcher, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            _wait_ready(proc, base, ready_timeout_s, log_path)
            yield Server(base, proc.pid)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], base: str, timeout_s: float, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"shoplens serve exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz", timeout=2.0).status_code == 200:
                return
        time.sleep(0.5)
    raise RuntimeError(f"shoplens serve was not ready after {timeout_s:.0f}s (log: {log})")
