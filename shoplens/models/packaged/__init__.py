"""The default model, shipped inside the package: a plain ``pip install`` can search.

``<this folder>/<model name>/`` is an export folder like the cache's
(``model.onnx``, ``preprocess.json``, ``meta.json``; see
:mod:`shoplens.models.cache`) plus the weights' licence (``LICENSE``) and where
they come from (``NOTICE.md``). :func:`packaged_dir` finds it; the registry
loads it when the model cache holds no export of that model, so serving it
needs neither torch nor the weights packages.

It is made by the project's own export command, never by hand::

    shoplens models export effnet-lite0-lite1-ml-int8 --to-package

which exports and quantizes into an empty temporary cache (needs the
``export`` extra) and copies the result here (:func:`write_packaged`).
Imports nothing of torch; may import what :mod:`shoplens.models` may.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from shoplens.errors import ModelUnavailable
from shoplens.models.cache import (
    META_FILE,
    MODEL_FILE,
    PREPROCESS_FILE,
    is_complete,
    read_meta,
    safe_name,
)

PACKAGED_ROOT = Path(__file__).resolve().parent
# The models a wheel carries: the default only (8.5 MB). Others are exported
# with the 'export' extra.
PACKAGED = ("effnet-lite0-lite1-ml-int8",)
_FILES = (MODEL_FILE, PREPROCESS_FILE, META_FILE)


def packaged_dir(name: str, root: Path = PACKAGED_ROOT) -> Path | None:
    """The shipped export of model ``name``; None when the package carries none."""
    folder = root / safe_name(name)
    if name not in PACKAGED or not is_complete(folder):
        return None
    try:
        return folder if read_meta(folder).get("name") == name else None
    except ModelUnavailable:
        return None


def require_packaged(name: str) -> None:
    """:class:`ModelUnavailable` unless model ``name`` is one the package carries."""
    if name not in PACKAGED:
        raise ModelUnavailable(
            f"only {', '.join(PACKAGED)} ship inside the package; export {name} into the "
            "model cache instead (shoplens models export without --to-package)"
        )


def write_packaged(export_dir: Path, root: Path = PACKAGED_ROOT) -> Path:
    """Copy the export in ``export_dir`` into the package (a source checkout); returns it.

    Only the export's files are replaced: the licence and notice beside them stay.
    """
    name = str(read_meta(export_dir)["name"])
    require_packaged(name)
    target = root / safe_name(name)
    target.mkdir(parents=True, exist_ok=True)
    for file in _FILES:
        tmp = target / f".{file}.tmp"
        shutil.copyfile(export_dir / file, tmp)
        tmp.replace(target / file)
    return target
