"""``shoplens db upgrade`` and ``shoplens db status`` as an operator runs them, on
a SQLite data dir and on a PostgreSQL database (``db_target``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SECRET = "hunter2"


def shoplens(*args: str, data_dir: Path, url: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "SHOPLENS_DATABASE_URL"}
    env["SHOPLENS_DATA_DIR"] = str(data_dir)
    if url is not None:
        env["SHOPLENS_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "shoplens.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_upgrade_then_status(tmp_path: Path, db_target: str | None) -> None:
    # The test server trusts loopback connections: the password is there to be masked.
    url = None if db_target is None else db_target.replace("postgres@", f"postgres:{SECRET}@")
    before = shoplens("db", "status", "--json", data_dir=tmp_path, url=url)
    assert before.returncode == 0, before.stderr
    components = json.loads(before.stdout)["components"]
    # Every store, from one list; the replica registry lives only on PostgreSQL.
    expected = ["catalog", "jobs", "ar", "feedback"] + ([] if url is None else ["replicas"])
    assert [c["component"] for c in components] == expected
    assert all(c["version"] == 0 and c["latest"] >= 1 for c in components)
    assert not list(tmp_path.iterdir())  # status creates nothing

    first = shoplens("db", "upgrade", data_dir=tmp_path, url=url)
    assert first.returncode == 0, first.stderr
    assert "applied catalog:1 catalog tables" in first.stdout
    assert "applied catalog:3 word index" in first.stdout
    again = shoplens("db", "upgrade", data_dir=tmp_path, url=url)
    assert again.returncode == 0 and "up to date" in again.stdout

    status = shoplens("db", "status", data_dir=tmp_path, url=url)
    assert status.returncode == 0, status.stderr
    assert "catalog: version 3" in status.stdout and "pending" not in status.stdout
    for component in expected:
        assert f"applied {component}:1 " in first.stdout
        assert f"{component}: version " in status.stdout
    if url is None:
        assert "sqlite" in status.stdout and str(tmp_path / "catalog.db") in status.stdout
    else:
        assert "postgresql://postgres:***@127.0.0.1" in status.stdout
        assert SECRET not in status.stdout + status.stderr + first.stdout + first.stderr


def test_a_bad_or_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    p = shoplens("db", "status", data_dir=tmp_path, url=f"mysql://u:{SECRET}@h/db")
    assert p.returncode == 2 and SECRET not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "shoplens: error: SHOPLENS_DATABASE_URL must be a postgresql:// URL"
    ]
    # Port 1 on loopback: nothing listens there.
    p = shoplens("db", "upgrade", data_dir=tmp_path, url=f"postgresql://u:{SECRET}@127.0.0.1:1/db")
    assert p.returncode == 2 and SECRET not in p.stderr
    [line] = p.stderr.strip().splitlines()
    assert line.startswith(
        "shoplens: error: cannot use the database postgresql://u:***@127.0.0.1:1"
    )
