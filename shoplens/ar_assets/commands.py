"""Command-line commands of this part (registered by shoplens.cli).

``shoplens ar add|show|rm|reconvert``. This part never imports the indexer, so
``shoplens.cli`` hands :func:`register` the catalog look-up ``ar add`` checks
product ids against (as the service hands the routes theirs).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from shoplens.cli_options import DataDirOption, JsonOption, make_settings

if TYPE_CHECKING:
    from shoplens.ar_assets.service import ArService
    from shoplens.config import Settings

# (settings, product id) -> whether the catalog has that product.
ProductExists = Callable[["Settings", str], bool]

ar_app = typer.Typer(help="3D models for AR try-on.", no_args_is_help=True)


def _service(data_dir: Path | None) -> tuple[ArService, Settings]:
    settings = make_settings(data_dir)
    return _open(settings), settings


def _open(settings: Settings) -> ArService:
    # Imported here: pxr and friends should not slow down every other command.
    from shoplens.ar_assets.service import ArService

    return ArService.open(settings)


def _base_url(settings: Settings) -> str:
    """For links printed outside a request: the public URL, else the serve address."""
    return (settings.public_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def _add_command(product_exists: ProductExists) -> Callable[..., None]:
    def add(
        product_id: Annotated[
            str, typer.Argument(help="Product id (1-128 chars of A-Za-z0-9._:-)")
        ],
        file: Annotated[Path, typer.Argument(help=".glb, or .zip holding one .gltf")],
        placement: Annotated[
            str, typer.Option(help="floor|wall|table|face|head|wrist|foot")
        ] = "floor",
        variant: Annotated[str | None, typer.Option(help="Named variant (colour, size...)")] = None,
        as_json: JsonOption = False,
        data_dir: DataDirOption = None,
    ) -> None:
        """Check, optimise, convert and attach a 3D model to a product of the catalog.

        With --json, stdout is one JSON document (the AR block and the report, as the
        HTTP upload answers); everything else goes to stderr.
        """
        from shoplens.ar_assets.service import require_product
        from shoplens.errors import NotFound

        settings = make_settings(data_dir)
        # A typo in the id must not store an asset nobody can find.
        require_product(product_id, product_exists(settings, product_id))
        if not file.is_file():
            raise NotFound(f"no such file: {file}")
        # A refused model raises InvalidAsset: shoplens.cli prints its one-line message
        # (the first error, its JSON pointer and how many more) and exits non-zero.
        with _stdout_to_stderr() if as_json else contextlib.nullcontext():
            ar = _open(settings)
            row, report = ar.ingest(
                product_id, file, original_name=file.name, placement=placement, variant=variant
            )
            block = ar.block(product_id, _base_url(settings), row.variant)
        if as_json:
            typer.echo(json.dumps({**block, "report": report.to_dict()}, indent=2))
            return
        typer.echo(json.dumps(block, indent=2))
        typer.echo(f"report: {report.summary()}")
        for w in report.warnings:
            typer.echo(f"  warning {w.code}: {w.message}")

    return add


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send file descriptor 1 to stderr meanwhile: native libraries (USD) and child
    processes write there behind Python's back, and --json promises stdout is JSON."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@ar_app.command("show")
def show(
    product_id: str,
    data_dir: DataDirOption = None,
) -> None:
    """Print a product's AR block."""
    ar, settings = _service(data_dir)
    typer.echo(json.dumps(ar.block(product_id, _base_url(settings)), indent=2))


@ar_app.command("rm")
def rm(
    product_id: str,
    variant: Annotated[str | None, typer.Option(help="Only this variant")] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a product's 3D model (all variants unless --variant)."""
    ar, _settings = _service(data_dir)
    n = ar.delete(product_id, variant)
    typer.echo(f"removed {n} AR model(s) of {product_id}")


@ar_app.command("reconvert")
def reconvert(
    product_ids: Annotated[
        list[str] | None,
        typer.Argument(metavar="PRODUCT_ID", help="Products to rebuild (all their variants)"),
    ] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every stored AR asset")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be rebuilt")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Rebuild the USDZ and mobile GLB of stored assets made by an older recipe.

    From the stored original upload, with its placement and variant, as an upload
    would; assets already made by the current recipe are skipped. A failure leaves
    that asset as it was and the others go on; exits 1 if any failed.
    """
    from shoplens.ar_assets.pipeline import RECIPE, recipe_of
    from shoplens.errors import BadParameter

    if bool(product_ids) == all_:
        raise BadParameter("give product ids or --all (not both)")
    ar, _settings = _service(data_dir)
    failed = rebuilt = current = 0
    if all_:
        rows = ar.all_rows()
    else:
        rows = []
        for pid in dict.fromkeys(product_ids or []):
            found = ar.rows(pid)
            if not found:
                failed += 1
                typer.echo(f"failed  {pid}: no AR model")
            rows.extend(found)
    for row in rows:
        name = f"{row.product_id}/{row.variant}"
        made_by = recipe_of(row.report)
        if made_by >= RECIPE:
            current += 1
            typer.echo(f"current {name} (recipe {made_by})")
            continue
        if dry_run:
            if ar.store.path(row.source_sha, row.source_ext).is_file():
                rebuilt += 1
                typer.echo(f"would rebuild {name} (recipe {made_by} -> {RECIPE})")
            else:
                failed += 1
                typer.echo(f"failed  {name}: the original upload is not stored")
            continue
        try:
            new, _report = ar.reconvert(row)
        except Exception as exc:  # one asset's failure must not stop the others
            failed += 1
            reason = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            typer.echo(f"failed  {name}: {reason} (left as it was)")
            continue
        rebuilt += 1
        typer.echo(
            f"rebuilt {name} (recipe {made_by} -> {RECIPE}): usdz "
            f"{_short(row.usdz_sha)} -> {_short(new.usdz_sha)}, mobile "
            f"{_short(row.mobile_sha)} -> {_short(new.mobile_sha)}"
        )
    verb = "would rebuild" if dry_run else "rebuilt"
    typer.echo(f"reconvert: {rebuilt} {verb}, {current} current, {failed} failed")
    if failed:
        raise typer.Exit(1)


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "none"


def register(app: typer.Typer, *, product_exists: ProductExists) -> None:
    """Add this part's commands to the ``shoplens`` app.

    ``product_exists``: the catalog look-up ``ar add`` refuses unknown products with.
    """
    ar_app.command("add")(_add_command(product_exists))
    app.add_typer(ar_app, name="ar")
