"""The PostgreSQL test harness (tests/pg.py) gives each test a real, private database.

Also checks the server features the replica design leans on (LISTEN/NOTIFY,
advisory locks) work on the server the tests start, and that a machine
without PostgreSQL skips these tests instead of failing them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from tests.pg import PgServer

REPO = Path(__file__).resolve().parents[1]


def test_a_fresh_database_takes_a_table_and_rows(pg_url: str) -> None:
    assert pg_url.startswith("postgresql://postgres@127.0.0.1:")
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        ).fetchone() == (0,)
        conn.execute("CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT NOT NULL)")
        conn.execute("INSERT INTO items VALUES (1, 'chair'), (2, 'lamp')")
        conn.commit()
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT id, name FROM items ORDER BY id").fetchall()
        major = conn.info.server_version // 10000
    assert rows == [(1, "chair"), (2, "lamp")]
    assert major >= 13  # DROP DATABASE ... WITH (FORCE) in the harness needs 13


def test_two_databases_are_isolated(pg_server: PgServer) -> None:
    a, b = pg_server.create_database(), pg_server.create_database()
    try:
        with psycopg.connect(pg_server.url(a)) as conn:
            conn.execute("CREATE TABLE only_in_a (x INTEGER)")
            conn.execute("INSERT INTO only_in_a VALUES (7)")
        with psycopg.connect(pg_server.url(b)) as conn:
            with pytest.raises(psycopg.errors.UndefinedTable):
                conn.execute("SELECT x FROM only_in_a")
            conn.rollback()
            conn.execute("CREATE TABLE only_in_a (x INTEGER)")  # same name, own table
            assert conn.execute("SELECT count(*) FROM only_in_a").fetchone() == (0,)
        with psycopg.connect(pg_server.url(a)) as conn:
            assert conn.execute("SELECT x FROM only_in_a").fetchall() == [(7,)]
    finally:
        pg_server.drop_database(a)
        pg_server.drop_database(b)
    with psycopg.connect(pg_server.url(), autocommit=True) as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = ANY(%s)", ([a, b],)
        ).fetchone()
    assert left == (0,)


def test_notify_reaches_a_listener_and_advisory_locks_exclude(pg_url: str) -> None:
    with (
        psycopg.connect(pg_url, autocommit=True) as listener,
        psycopg.connect(pg_url, autocommit=True) as other,
    ):
        listener.execute("LISTEN catalog")
        other.execute("SELECT pg_notify('catalog', '42')")
        got = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=1)]
        assert got == [("catalog", "42")]
        # A session advisory lock held by one connection is refused to another
        # until released: what keeps one job runner across replicas.
        assert listener.execute("SELECT pg_try_advisory_lock(18)").fetchone() == (True,)
        assert other.execute("SELECT pg_try_advisory_lock(18)").fetchone() == (False,)
        listener.execute("SELECT pg_advisory_unlock(18)")
        assert other.execute("SELECT pg_try_advisory_lock(18)").fetchone() == (True,)


def test_without_postgresql_binaries_the_tests_skip(tmp_path: Path) -> None:
    """A machine without PostgreSQL reports a skip with the reason, not an error."""
    (tmp_path / "test_needs_pg.py").write_text(
        textwrap.dedent(
            """
            from pathlib import Path
            import tests.pg

            tests.pg.DEBIAN_ROOT = Path("/nonexistent-postgresql")

            def test_uses_a_database(pg_url):
                raise AssertionError("must not run without a server")
            """
        ),
        encoding="utf-8",
    )
    empty_path = tmp_path / "bin"
    empty_path.mkdir()
    env = {**os.environ, "PATH": str(empty_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [
            sys.executable,
            *("-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-p", "tests.pg"),
            *("--rootdir", str(tmp_path), "-c", os.devnull, str(tmp_path)),
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "1 skipped" in out, out
    assert "initdb" in out and "install-postgres.sh" in out, out
