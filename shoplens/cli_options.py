"""What several ``shoplens`` commands share: their common options and the settings they build.

Every part's ``commands.py`` imports from here; this module imports no
command module, so the parts never import each other or :mod:`shoplens.cli`.
"""

from __future__ import annotations

import os
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


def one_blas_thread() -> None:
    """One OpenBLAS thread per matrix product in this process, unless set.

    The service already runs searches on many threads; OpenBLAS's own threads
    on top spin-wait after every product (a search's query adaptation), taking
    a core from the work that follows: on the 2-core box a studio search's
    re-ranking cost 31 ms of CPU with them and 15 ms without, a plain search
    6.5 and 2.2 ms, and a learn job's fit (10 photos per product) 40 s instead
    of 1.6 s. Must run before numpy loads its BLAS, so first thing in the
    commands that serve or learn; ``OPENBLAS_NUM_THREADS`` set by the operator wins.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
