"""OpenCLIP models from a local checkpoint (optional extra ``openclip``)."""

from __future__ import annotations

from pathlib import Path

from shoplens.config import Settings
from shoplens.errors import ModelUnavailable


def checkpoint_path(settings: Settings) -> Path:
    """The configured local checkpoint; ModelUnavailable when unset or missing."""
    path = settings.openclip_checkpoint
    if path is None:
        raise ModelUnavailable(
            f"model {settings.model!r} needs a local checkpoint: set SHOPLENS_OPENCLIP_CHECKPOINT "
            "to the weights file (nothing is downloaded)"
        )
    if not Path(path).is_file():
        raise ModelUnavailable(f"the OpenCLIP checkpoint {path} does not exist or is not a file")
    return Path(path)
