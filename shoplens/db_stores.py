"""Every store that keeps rows in the metadata database, in ONE list, and the
``shoplens db`` commands over it (``upgrade``: run every store's migrations;
``status``: which engine, which versions).

A composition edge like :mod:`shoplens.cli`: it may import every part. A store
on :mod:`shoplens.db` adds itself to :func:`stores` (its component, its SQLite
file, its migrations) and both commands cover it.
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
    """One store: its migration component, its SQLite file when no PostgreSQL URL
    is set, how to bring its schema up to date, and its newest known version."""

    component: str
    sqlite_file: Callable[[Settings], Path]
    # Applies the pending migrations at this target; what it applied.
    upgrade: Callable[[Path | str], list[str]]
    latest: Callable[[], int]
    # False: the store exists only on PostgreSQL (the replica registry).
    on_sqlite: bool = True


def _upgrade_catalog(target: Path | str) -> list[str]:
    from shoplens.indexer.catalog.store import CatalogStore

    # Opened, not only migrated: opening also readies the word index.
    with CatalogStore(target) as store:
        return store.applied_migrations


def _latest(module: str) -> Callable[[], int]:
    def latest() -> int:
        import importlib

        return len(importlib.import_module(module).MIGRATIONS)

    return latest


def _upgrade(module: str) -> Callable[[Path | str], list[str]]:
    def upgrade(target: Path | str) -> list[str]:
        import importlib

        from shoplens.db.migrations import upgrade as upgrade_store

        store = importlib.import_module(module)
        return upgrade_store(target, store.COMPONENT, store.MIGRATIONS)

    return upgrade


def _feedback_db(settings: Settings) -> Path:
    from shoplens.indexer.feedback.book import feedback_db

    return feedback_db(settings)


def stores() -> list[StoreEntry]:
    """Every store migrated through :mod:`shoplens.db.migrations`, in opening order.

    Modules are imported when a command runs, not when the CLI starts (FAISS,
    the AR tools: ``shoplens --help`` stays fast).
    """
    catalog_db = lambda s: s.db_path  # noqa: E731  (catalog.db: catalog, jobs, AR rows)
    return [
        StoreEntry(
            "catalog", catalog_db, _upgrade_catalog, _latest("shoplens.indexer.catalog.schema")
        ),
        StoreEntry(
            "jobs",
            catalog_db,
            _upgrade("shoplens.indexer.ops.job_store"),
            _latest("shoplens.indexer.ops.job_store"),
        ),
        StoreEntry(
            "ar",
            catalog_db,
            _upgrade("shoplens.ar_assets.store"),
            _latest("shoplens.ar_assets.store"),
        ),
        StoreEntry(
            "feedback",
            _feedback_db,
            _upgrade("shoplens.indexer.feedback.store"),
            _latest("shoplens.indexer.feedback.store"),
        ),
        StoreEntry(
            "replicas",
            catalog_db,
            _upgrade("shoplens.indexer.ops.replicas"),
            _latest("shoplens.indexer.ops.replicas"),
            on_sqlite=False,
        ),
    ]


def _active(settings: Settings) -> list[StoreEntry]:
    on_postgres = settings.database_url is not None
    return [e for e in stores() if on_postgres or e.on_sqlite]


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
    """Bring every store's schema up to date; what was applied (``component:N name``)."""
    applied: list[str] = []
    for entry in _active(settings):
        applied += entry.upgrade(settings.database(entry.sqlite_file(settings)))
    return applied


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per component: the version its database has (0: none yet) and the newest known.

    Read only: a SQLite file that does not exist yet is reported, not created.
    """
    from shoplens.db import Database
    from shoplens.db.migrations import applied

    rows: list[dict[str, Any]] = []
    for entry in _active(settings):
        sqlite_file = entry.sqlite_file(settings)
        target = settings.database(sqlite_file)
        exists = isinstance(target, str) or sqlite_file.is_file()
        version = 0
        if exists:
            db = Database(target, name="status")
            try:
                version = applied(db, entry.component)
            finally:
                db.close()
        rows.append(
            {
                "component": entry.component,
                "version": version,
                "latest": entry.latest(),
                "database": "postgresql" if isinstance(target, str) else str(sqlite_file),
            }
        )
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
