"""What several ``shoplens`` commands share: their common options and the settings they build.

Every part's ``commands.py`` imports from here; this module imports no
command module, so the parts never import each other or :mod:`shoplens.cli`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shoplens.config import Settings

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="SHOPLENS_DATA_DIR",
        help="Where indexes, metadata and AR assets live (default ./shoplens-data).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def make_settings(data_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment, with command-line options on top (None = not given)."""
    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values)
