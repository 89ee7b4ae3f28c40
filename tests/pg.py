"""A real PostgreSQL server for the tests: Debian's binaries, a throw-away cluster.

``pg_server`` (session): finds ``initdb``/``pg_ctl``/``postgres`` (on PATH, then
``/usr/lib/postgresql/<version>/bin``, newest first), runs ``initdb`` into a
temp dir, starts the server on a free port of 127.0.0.1 with its socket in
that dir, and stops it at the end of the session. Run as root, the cluster
belongs to the ``postgres`` OS user (PostgreSQL refuses to run as root).

``pg_url`` (per test): a fresh, empty database on that server, as the URL a
store opens (``postgresql://postgres@127.0.0.1:PORT/NAME``); dropped after.

``db_target`` (per test, parametrised ``sqlite`` / ``postgres``): ``None``
(a store keeps its SQLite file, the default) or a fresh database's URL, so a
store's test runs against both backends with one body.

Where the binaries are missing or the server does not start, the tests that
ask for these fixtures are skipped with the reason; nothing fails. A session
killed before its teardown (``timeout``, SIGKILL) leaves nothing running: a
detached reaper stops the server and deletes its dir once the session's
process is gone. The
cluster runs with ``fsync=off``: the tests check behaviour, not durability
against power loss, and a commit then costs microseconds.

Registered for every test by ``pytest_plugins`` in ``tests/conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

BINARIES = ("initdb", "pg_ctl", "postgres")
# Debian's layout: /usr/lib/postgresql/15/bin; the version the design targets first.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
PREFERRED_MAJOR = 15
OS_USER = "postgres"  # who owns the cluster when the tests run as root
SUPERUSER = "postgres"  # the database role the tests connect as (trust auth, loopback only)
START_TIMEOUT_S = 30


def find_bindir() -> Path | None:
    """The directory holding all of initdb, pg_ctl and postgres, or None.

    PATH first (a developer's own build or a symlink farm), then Debian's
    versioned directories: PostgreSQL 15 if present, else the newest.
    """
    on_path = shutil.which("initdb")
    if on_path is not None:
        # Resolve symlinks (/usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb):
        # pg_ctl starts the `postgres` that sits beside the real initdb.
        real = Path(on_path).resolve().parent
        if all((real / b).is_file() for b in BINARIES):
            return real
    candidates = []
    for d in DEBIAN_ROOT.glob("*/bin"):
        if all((d / b).is_file() for b in BINARIES) and d.parent.name.isdigit():
            candidates.append((int(d.parent.name), d))
    if not candidates:
        return None
    for major, d in candidates:
        if major == PREFERRED_MAJOR:
            return d
    return max(candidates)[1]


def free_port() -> int:
    """A TCP port nobody listens on now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running throw-away PostgreSQL cluster."""

    bindir: Path
    root: Path  # the temp dir: data/, the socket, the log
    port: int
    host: str = "127.0.0.1"

    @property
    def datadir(self) -> Path:
        return self.root / "data"

    @property
    def logfile(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def create_database(self, prefix: str = "t") -> str:
        """A new empty database (from template0: nothing a test added to template1)."""
        import psycopg

        name = f"{prefix}_{secrets.token_hex(6)}"
        # CREATE DATABASE cannot run inside a transaction block: autocommit.
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8'")
        return name

    def drop_database(self, name: str) -> None:
        """Drop ``name``, ending what still holds it (a test's leftover connection)."""
        import psycopg

        if not re.fullmatch(r"[a-z0-9_]+", name):
            raise ValueError(f"not a test database name: {name!r}")
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.logfile.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return "(no server log)"


def _as_owner(cmd: list[str]) -> list[str]:
    """``cmd`` as the postgres OS user when we are root (the server will not run as root)."""
    if os.geteuid() != 0:
        return cmd
    runuser = shutil.which("runuser")
    if runuser is None:
        raise RuntimeError("running as root without `runuser` to drop to the postgres user")
    return [runuser, "-u", OS_USER, "--", *cmd]


def _give_to_owner(path: Path) -> None:
    if os.geteuid() != 0:
        return
    import pwd

    try:
        pw = pwd.getpwnam(OS_USER)
    except KeyError as exc:
        raise RuntimeError(
            f"running as root and there is no {OS_USER!r} OS user to own the cluster"
        ) from exc
    os.chown(path, pw.pw_uid, pw.pw_gid)


def _run(cmd: list[str], what: str) -> None:
    proc = subprocess.run(
        _as_owner(cmd),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S + 30,
        check=False,
        # A directory the postgres user may enter (the tests' cwd may be a 0700 home).
        cwd=tempfile.gettempdir(),
    )
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()[-1500:]
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {out}")


def start_server(bindir: Path, attempts: int = 3) -> PgServer:
    """initdb + pg_ctl start; ``RuntimeError`` with the reason when it cannot run."""
    # Not under pytest's tmp dirs: their parents are 0700 root, which the
    # postgres user could not enter. /tmp is world-traversable.
    root = Path(tempfile.mkdtemp(prefix="shoplens-pg-"))
    try:
        _give_to_owner(root)
        server = PgServer(bindir=bindir, root=root, port=0)
        _run(
            [
                str(bindir / "initdb"),
                *("-D", str(server.datadir)),
                *("-U", SUPERUSER, "--auth=trust", "-E", "UTF8", "--locale=C"),
                "--no-sync",  # a throw-away cluster: nothing to make durable
            ],
            "initdb",
        )
        last = ""
        # A free port can be taken between the probe and the bind: try again.
        for _ in range(attempts):
            server.port = free_port()
            opts = " ".join(
                [
                    f"-p {server.port}",
                    f"-k {root}",  # the Unix socket stays inside the temp dir
                    "-c listen_addresses=127.0.0.1",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c max_connections=200",  # replica tests open many pools
                ]
            )
            try:
                _run(
                    [
                        str(bindir / "pg_ctl"),
                        *("-D", str(server.datadir), "-l", str(server.logfile)),
                        *("-w", "-t", str(START_TIMEOUT_S), "-o", opts, "start"),
                    ],
                    "pg_ctl start",
                )
                return server
            except RuntimeError as exc:
                last = f"{exc}; log: {server.log_tail(800)}"
        raise RuntimeError(last)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


def _stop_command(server: PgServer) -> list[str]:
    # "immediate": no checkpoint of data about to be deleted anyway.
    pg_ctl = str(server.bindir / "pg_ctl")
    return _as_owner([pg_ctl, "-D", str(server.datadir), "-m", "immediate", "stop"])


def start_reaper(server: PgServer) -> subprocess.Popen[bytes]:
    """A detached shell that stops the server and deletes its dir once this
    process is gone: a session killed by SIGTERM/SIGKILL (``timeout``, a CI
    cancel) runs no fixture teardown, and must not leave a server behind."""
    stop = " ".join(shlex.quote(a) for a in _stop_command(server))
    script = (
        f"while kill -0 {os.getpid()} 2>/dev/null; do sleep 1; done; "
        f"{stop} >/dev/null 2>&1; rm -rf {shlex.quote(str(server.root))}"
    )
    return subprocess.Popen(
        ["/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a signal sent to the session's process group
        cwd=tempfile.gettempdir(),
    )


def stop_server(server: PgServer) -> None:
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        subprocess.run(
            _stop_command(server),
            capture_output=True,
            timeout=START_TIMEOUT_S,
            check=False,
            cwd=tempfile.gettempdir(),
        )
    shutil.rmtree(server.root, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the session; skips the asking tests if it cannot run."""
    try:
        import psycopg  # noqa: F401  (the client every PostgreSQL test uses)
    except ImportError:
        pytest.skip("psycopg (psycopg[binary]) is not installed")
    bindir = find_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in "
            f"{DEBIAN_ROOT}/*/bin: run scripts/install-postgres.sh"
        )
    try:
        server = start_server(bindir)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"PostgreSQL could not start from {bindir}: {exc}")
    reaper = start_reaper(server)
    try:
        yield server
    finally:
        stop_server(server)
        reaper.kill()  # nothing left for it to do
        reaper.wait()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh empty database for this test: ``postgresql://postgres@127.0.0.1:PORT/NAME``."""
    name = pg_server.create_database()
    yield pg_server.url(name)
    pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db_target(request: pytest.FixtureRequest) -> str | None:
    """``None`` (SQLite, the default) or a fresh PostgreSQL database URL: one test, both backends.

    The postgres case is skipped where no server can run.
    """
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("pg_url")
    return url
