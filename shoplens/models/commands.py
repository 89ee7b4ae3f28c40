"""``shoplens models list|export`` (registered by shoplens.cli).

Model modules are imported inside the commands so ``shoplens --help`` stays
fast and never needs torch.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from shoplens.cli_options import DataDirOption, make_settings

models_app = typer.Typer(
    help="Embedding models: what exists, export to ONNX.", no_args_is_help=True
)


@models_app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """The models this install knows, and whether each is exported on this machine."""
    from shoplens.errors import ModelUnavailable
    from shoplens.models.packaged import PACKAGED_ROOT
    from shoplens.models.registry import available_models, model_dir

    settings = make_settings(data_dir)
    rows = []
    for info in available_models(settings):
        try:
            where = model_dir(info.name, settings)
        except ModelUnavailable:
            where = None
        rows.append(
            {
                "name": info.name,
                "dim": info.dim,
                "input_size": info.input_size,
                "text": info.supports_text,
                "exported": where is not None,
                "where": str(where) if where else None,
                "packaged": where is not None and where.parent == PACKAGED_ROOT,
                "configured": info.name == settings.model,
                "description": info.description,
            }
        )
    if as_json:
        typer.echo(json.dumps({"models": rows}, indent=2))
        return
    width = max(len(str(row["name"])) for row in rows) + 1  # + the "configured" mark
    typer.echo(f"{'NAME':<{width}} {'DIM':>5} {'INPUT':>5} {'TEXT':<4} {'EXPORTED':<8} WHERE")
    for row in rows:
        mark = "*" if row["configured"] else " "
        typer.echo(
            f"{mark}{row['name']:<{width - 1}} "
            f"{row['dim'] or '?':>5} {row['input_size'] or '?':>5} "
            f"{'yes' if row['text'] else 'no':<4} {'yes' if row['exported'] else 'no':<8} "
            f"{row['where'] or '-'}"
        )
    typer.echo(f"(* = configured; cache {settings.model_cache_dir})")


@models_app.command("export")
def export(
    name: Annotated[
        str | None, typer.Argument(help="Model name (default: the configured model).")
    ] = None,
    to_package: Annotated[
        bool,
        typer.Option(
            "--to-package",
            help="Export afresh (an empty temporary cache) into the source tree's "
            "shoplens/models/packaged/, the copy a plain pip install serves.",
        ),
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export a model to ONNX into the model cache (needs the 'export' extra)."""
    from shoplens.models.registry import export_model

    settings = make_settings(data_dir)
    wanted = name or settings.model
    if not to_package:
        typer.echo(str(export_model(wanted, settings)))
        return
    import tempfile
    from pathlib import Path

    from shoplens.models.packaged import require_packaged, write_packaged

    require_packaged(wanted)  # before a minute of export, not after
    with tempfile.TemporaryDirectory(prefix="shoplens-export-") as tmp:
        # Nothing cached may stand in for the export: the package gets a fresh one.
        fresh = settings.model_copy(update={"model_cache_dir": Path(tmp)})
        typer.echo(str(write_packaged(export_model(wanted, fresh))))


def register(app: typer.Typer) -> None:
    """Add this part's commands to the ``shoplens`` app."""
    app.add_typer(models_app, name="models")
