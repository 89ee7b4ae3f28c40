#!/usr/bin/env python3
"""Export an embedding model to ONNX into the model cache (operator script).

Same as ``shoplens models export [NAME]``, for machines where the console
script is not on PATH, e.g. a build step that bakes the export into an image:

    python scripts/export_model.py effnet-lite0 --cache-dir /opt/shoplens/models

Needs the ``export`` extra (torch, timm, onnx); serving then needs none of it.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from shoplens.config import Settings
from shoplens.errors import ShoplensError
from shoplens.models.registry import available_models, export_model


def main(argv: list[str] | None = None) -> int:
    names = [m.name for m in available_models()]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", nargs="?", help=f"model name ({', '.join(names)}, open_clip:<arch>)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="model cache (default SHOPLENS_MODEL_CACHE_DIR)"
    )
    parser.add_argument("--checkpoint", type=Path, help="OpenCLIP checkpoint file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    overrides = {
        "model_cache_dir": args.cache_dir,
        "openclip_checkpoint": args.checkpoint,
        "model": args.name,
    }
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    try:
        print(export_model(settings.model, settings))
    except ShoplensError as exc:
        print(f"export_model: error: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
