"""A real ``uvicorn`` subprocess of the service on 127.0.0.1, for kill/restart tests.

``slow_app`` is the real app plus one test-only route that sleeps, so a test
can have a request in flight while it signals the server.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from shoplens.config import Settings
from tests.service.helpers import ADMIN_TOKEN
from tests.support import free_port

REPO = Path(__file__).resolve().parents[2]
FACTORY = "tests.hardening.server:slow_app"


def slow_app() -> Any:
    """``uvicorn --factory`` target: the service from env settings + ``GET /test/slow``."""
    from shoplens.service.app import create_app

    app = create_app(Settings())

    async def slow(s: float = 2.0) -> dict[str, Any]:
        await asyncio.sleep(min(s, 30.0))
        return {"slept": s}

    app.add_api_route("/test/slow", slow, methods=["GET"], include_in_schema=False)
    return app


class Server:
    """One service process; ``start`` waits until ``/readyz`` answers 200."""

    def __init__(self, data_dir: Path, log_path: Path, **env: str) -> None:
        self.data_dir = data_dir
        self.log_path = log_path
        self.env = env
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 120.0) -> Server:
        env = {
            **os.environ,
            "SHOPLENS_DATA_DIR": str(self.data_dir),
            "SHOPLENS_ADMIN_TOKEN": ADMIN_TOKEN,
            "SHOPLENS_RELOAD_INTERVAL_S": "0.2",
            "SHOPLENS_ORT_THREADS": "1",
            "PYTHONPATH": str(REPO),
            **self.env,
        }
        cmd = [
            sys.executable, "-m", "uvicorn", "--factory", FACTORY,
            "--host", "127.0.0.1", "--port", str(self.port),
            "--timeout-graceful-shutdown", "20", "--no-access-log",
        ]  # fmt: skip
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept by the child
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        tail = self.log_path.read_text()[-3000:]
        raise RuntimeError(f"server not ready in {timeout_s} s: {tail}")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def rss_bytes(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0
