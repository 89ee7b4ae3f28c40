"""Finding and running the Node tools Shoplens drives (Khronos validator, glTF-Transform)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

log = logging.getLogger(__name__)

NODE_SCRIPTS = Path(__file__).resolve().parent / "node"


@dataclass(frozen=True)
class NodeTools:
    node: str | None
    node_modules: Path | None

    @property
    def validator(self) -> Path | None:
        if self.node is None or self.node_modules is None:
            return None
        d = self.node_modules / "gltf-validator"
        return d if (d / "index.js").is_file() else None

    @property
    def gltf_transform(self) -> Path | None:
        if self.node is None or self.node_modules is None:
            return None
        p = self.node_modules / "@gltf-transform" / "cli" / "bin" / "cli.js"
        return p if p.is_file() else None

    @property
    def decoders(self) -> Path | None:
        """The ``node_modules`` that ``node/decompress.js`` reads Draco/meshopt with, if whole."""
        if self.gltf_transform is None or self.node_modules is None:
            return None
        missing = [p for p in DECODER_PACKAGES if not (self.node_modules / p).is_dir()]
        return None if missing else self.node_modules


# What node/decompress.js requires (all installed with @gltf-transform/cli).
DECODER_PACKAGES = (
    "@gltf-transform/core",
    "@gltf-transform/extensions",
    "@gltf-transform/functions",
    "draco3dgltf",
    "meshoptimizer",
)


def _candidate_dirs(env: str | None, cwd: Path) -> list[Path]:
    out = [Path(env)] if env else []
    for start in (Path(__file__).resolve().parent, cwd.resolve()):
        out.extend(p / "node_modules" for p in (start, *start.parents))
    return out


def find_tools() -> NodeTools:
    """Locate ``node`` (on PATH) and the ``node_modules`` holding the tools.

    ``SHOPLENS_NODE_MODULES`` is looked at first, then ``node_modules`` folders above
    this package and above the working directory. Cached per environment: the
    look-up probes the file system and runs on every upload, while a changed PATH
    (a test hiding node, an operator's shell) is looked at again.
    """
    return _find(
        os.environ.get("PATH", os.defpath),
        os.environ.get("SHOPLENS_NODE_MODULES"),
        str(Path.cwd()),
    )


@lru_cache(maxsize=8)
def _find(path: str, env: str | None, cwd: str) -> NodeTools:
    node = shutil.which("node", path=path)
    for d in _candidate_dirs(env, Path(cwd)):
        if (d / "gltf-validator").is_dir() or (d / "@gltf-transform").is_dir():
            return NodeTools(node, d)
    return NodeTools(node, None)


class ToolFailed(Exception):
    """A Node tool crashed, timed out or is missing; callers fall back."""


def run_node(args: list[str], *, timeout: float, cwd: Path | None = None) -> str:
    """Run ``node ARGS`` and return stdout; ToolFailed on any failure."""
    tools = find_tools()
    if tools.node is None:
        raise ToolFailed("node is not installed")
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    try:
        proc = subprocess.run(
            [tools.node, *args],
            capture_output=True,
            timeout=timeout,
            cwd=cwd,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"timed out after {timeout:.0f} s") from exc
    except OSError as exc:
        raise ToolFailed(str(exc)) from exc
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise ToolFailed(f"exit {proc.returncode}: {' | '.join(tail)}")
    return proc.stdout.decode(errors="replace")


def gltf_transform(args: list[str], *, timeout: float = 180.0) -> str:
    """Run the glTF-Transform CLI; ToolFailed if it is missing or fails."""
    cli = find_tools().gltf_transform
    if cli is None:
        raise ToolFailed("@gltf-transform/cli is not installed (run scripts/install-node-tools.sh)")
    return run_node([str(cli), *args], timeout=timeout)
