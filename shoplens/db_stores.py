"""Every store that keeps rows in the metadata database, in ONE list, and the
``shoplens db`` commands over it (``upgrade``: run every store's migrations;
``status``: which engine, which versions).

A composition edge like :mod:`shoplens.cli`: it may import every part. A store
ported to :mod:`shoplens.db` adds itself to :func:`stores` (its component
names, its SQLite file, how to open it so its migrations run) and both
commands cover it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings
from shoplens.config import Settings
from shoplens.errors import BadParameter, NotReady


@dataclass(frozen=True)
class StoreEntry:
    """One store: the migration components it owns, its SQLite file when no
    PostgreSQL URL is set, and how to open (and close) it so its migrations run."""

    name: str
    components: tuple[str, ...]
    sqlite_file: Callable[[Settings], Path]
    # Opens the store at this target and closes it; the migrations it applied.
    open: Callable[[Path | str], list[str]]
    latest: Callable[[], dict[str, int]]  # each component's newest known version


def _open_catalog(target: Path | str) -> list[str]:
    from shoplens.indexer.catalog.store import CatalogStore

    with CatalogStore(target) as store:
        return store.applied_migrations


def _catalog_latest() -> dict[str, int]:
    from shoplens.indexer.catalog.schema import COMPONENT, MIGRATIONS

    return {COMPONENT: len(MIGRATIONS)}


def stores() -> list[StoreEntry]:
    """Every store migrated through :mod:`shoplens.db.migrations`, in opening order."""
    return [
        StoreEntry(
            name="catalog",
            components=("catalog",),
            sqlite_file=lambda s: s.db_path,
            open=_open_catalog,
            latest=_catalog_latest,
        ),
    ]


def mask_url(url: str) -> str:
    """A database URL fit to print: its password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def engine(settings: Settings) -> str:
    """``postgresql (URL, password masked)`` or ``sqlite (one file per store under data_dir)``."""
    if settings.database_url is not None:
        return f"postgresql {mask_url(settings.database_url.get_secret_value())}"
    return f"sqlite (files under {settings.data_dir})"


def upgrade(settings: Settings) -> list[str]:
    """Open every store so its migrations run; what was applied (``component:N name``)."""
    applied: list[str] = []
    for entry in stores():
        applied += entry.open(settings.database(entry.sqlite_file(settings)))
    return applied


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per component: the version its database has (0: none yet) and the newest known.

    Read only: a SQLite file that does not exist yet is reported, not created.
    """
    from shoplens.db import Database
    from shoplens.db.migrations import applied

    rows: list[dict[str, Any]] = []
    for entry in stores():
        sqlite_file = entry.sqlite_file(settings)
        target = settings.database(sqlite_file)
        latest = entry.latest()
        where = "postgresql" if isinstance(target, str) else str(sqlite_file)
        exists = isinstance(target, str) or sqlite_file.is_file()
        db = Database(target, name="status") if exists else None
        try:
            for component in entry.components:
                have = applied(db, component) if db is not None else 0
                rows.append(
                    {
                        "component": component,
                        "version": have,
                        "latest": latest.get(component, 0),
                        "database": where,
                    }
                )
        finally:
            if db is not None:
                db.close()
    return rows


def _settings(data_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    try:
        return make_settings(data_dir)
    except ValidationError as exc:
        # The messages alone: pydantic would echo the input, password included.
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        raise BadParameter(reasons) from None


@contextmanager
def _reaching(settings: Settings) -> Iterator[None]:
    """A database that cannot be reached is one line naming it (password masked)."""
    try:
        yield
    except Exception as exc:
        if type(exc).__module__.split(".")[0] != "psycopg":
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = (
            mask_url(settings.database_url.get_secret_value())
            if settings.database_url is not None
            else str(settings.data_dir)
        )
        raise NotReady(f"cannot use the database {where}: {reason}") from None


db_app = typer.Typer(
    help="The metadata database: schema migrations and status.", no_args_is_help=True
)


@db_app.command("upgrade")
def upgrade_command(data_dir: DataDirOption = None) -> None:
    """Apply every pending schema migration (run before rolling replicas to a new release)."""
    settings = _settings(data_dir)
    typer.echo(f"database: {engine(settings)}")
    with _reaching(settings):
        done = upgrade(settings)
    for line in done:
        typer.echo(f"applied {line}")
    if not done:
        typer.echo("up to date")


@db_app.command("status")
def status_command(
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which engine and URL (password masked), and each component's schema version."""
    settings = _settings(data_dir)
    with _reaching(settings):
        rows = status(settings)
    if as_json:
        typer.echo(json.dumps({"engine": engine(settings), "components": rows}, indent=2))
        return
    typer.echo(f"database: {engine(settings)}")
    for row in rows:
        note = "" if row["version"] == row["latest"] else f" (pending: up to {row['latest']})"
        typer.echo(f"{row['component']}: version {row['version']}{note}  [{row['database']}]")


def register(app: typer.Typer) -> None:
    """Add ``shoplens db upgrade|status`` to the ``shoplens`` app."""
    app.add_typer(db_app, name="db")
