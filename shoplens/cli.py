"""The ``shoplens`` command: parses, configures logging, calls into the parts.

Each part contributes its commands through ``register(app)`` in its own
``commands.py`` so this file stays a thin composition root; the options and
settings the commands share live in :mod:`shoplens.cli_options`.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

import typer

from shoplens.errors import ShoplensError

if TYPE_CHECKING:
    from shoplens.config import Settings

app = typer.Typer(
    name="shoplens",
    help="Visual product search and AR try-on assets for online shops.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _product_exists(settings: Settings, product_id: str) -> bool:
    """The catalog look-up ``shoplens ar add`` checks ids against (the AR part cannot
    import the indexer); no catalog database yet means no products, and none is created."""
    from shoplens.indexer.catalog.store import CatalogStore

    if settings.database_url is None and not settings.db_path.is_file():
        return False
    with CatalogStore(settings.database(settings.db_path)) as store:
        return store.get_product(product_id) is not None


def _register_parts() -> None:
    from shoplens import db_stores, doctor
    from shoplens.ar_assets import commands as ar_commands
    from shoplens.indexer.ops import commands as indexer_commands
    from shoplens.models import commands as model_commands
    from shoplens.service import commands as service_commands

    for part in (indexer_commands, model_commands, service_commands, doctor, db_stores):
        part.register(app)
    ar_commands.register(app, product_exists=_product_exists)


_register_parts()


def main() -> None:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Libraries' own INFO chatter (FAISS probing CPU features, HTTP requests) is
    # not what an operator reads a command's output for.
    for name in ("faiss", "faiss.loader", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        app()
    except ShoplensError as exc:
        # User errors: one clear line, no traceback.
        typer.echo(f"shoplens: error: {exc.message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("shoplens: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
