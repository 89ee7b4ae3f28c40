"""Two service replicas over one PostgreSQL database: each registers, counts the
live replicas (``/readyz``), and enforces its share of the rate limit locally.

Real apps (lifespan run) over a real server (``tests/pg.py``); skipped where
PostgreSQL cannot run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr
from starlette.testclient import TestClient

from tests.service.conftest import AppFactory


def _until(check: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _live(client: TestClient) -> int:
    r = client.get("/readyz")
    assert r.status_code == 200, r.text
    return int(r.json()["replica"]["live_replicas"])


def test_two_live_replicas_each_admit_half_the_rate_limit(
    make_client: AppFactory, pg_data_dir: Path, pg_url: str
) -> None:
    data_dir = pg_data_dir
    shared = {
        "database_url": SecretStr(pg_url),
        "rate_limit_per_minute": 10,
        "replica_heartbeat_s": 0.2,
    }
    with make_client(data_dir, **shared) as a:
        assert _live(a) == 1
        with make_client(data_dir, **shared) as b:
            _until(lambda: _live(a) == 2)  # A recounts on its next heartbeat
            assert _live(b) == 2
            ids = {c.get("/readyz").json()["replica"]["id"] for c in (a, b)}
            assert len(ids) == 2
            answers = [a.get("/v1/products/banana") for _ in range(6)]
            assert [r.status_code for r in answers] == [200] * 5 + [429]
            assert "5 on each of 2 replicas" in answers[-1].json()["error"]["message"]
            # B has its own share: the limit holds for the service as a whole.
            assert [b.get("/v1/products/banana").status_code for _ in range(6)] == [200] * 5 + [429]
        # B shut down cleanly and unregistered: A is alone again at once.
        _until(lambda: _live(a) == 1)


def test_readyz_without_a_shared_database_says_one_replica(client: TestClient) -> None:
    replica = client.get("/readyz").json()["replica"]
    assert replica["live_replicas"] == 1 and replica["id"]
