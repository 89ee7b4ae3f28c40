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


def _candidate_dirs() -> list[Path]:
    env = os.environ.get("SHOPLENS_NODE_MODULES")
    out = [Path(env)] if env else []
    for start in (Path(__file__).resolve().parent, Path.cwd().resolve()):
        out.extend(p / "node_modules" for p in (start, *start.parents))
    return out


@lru_cache(maxsize=1)
def find_tools() -> NodeTools:
    """Locate ``node`` and the project's ``node_modules`` (env SHOPLENS_NODE_MODULES wins)."""
    node = shutil.which("node")
    for d in _candidate_dirs():
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
