"""Optional capabilities: what each enables, whether this install has it, how to get it.

One list for every place that reports them, so they cannot disagree: the
service's start-up warnings and ``/readyz``, ``shoplens status`` and ``shoplens
doctor``. A capability is *used* when this configuration relies on it (the AR
part always relies on the Node tools; the Ray engine only when configured):
a used capability that is missing changes what Shoplens does, and is warned
about instead of showing up only as an "info" line in some upload's report.

Checks look, never load: a Python package is found with ``find_spec`` (torch
is not imported to learn it is there), a Node tool by the file Shoplens runs.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from shoplens.ar_assets import tools
from shoplens.config import Settings

# How to get the Node tools, from a clone and from a pip install alike.
NODE_INSTALL = (
    "install Node.js and npm (e.g. apt install nodejs npm), then from a clone run "
    "`bash scripts/install-node-tools.sh`; elsewhere run `npm install gltf-validator "
    "@gltf-transform/cli` in a folder and set SHOPLENS_NODE_MODULES=<that folder>/node_modules"
)


@dataclass(frozen=True)
class Capability:
    name: str  # stable key (JSON, /readyz)
    title: str  # what a person calls it
    available: bool
    used: bool  # this configuration relies on it: missing, behaviour changes
    enables: str
    without: str  # what Shoplens does instead while it is missing
    install: str  # how to enable it
    found: str  # what was found (version, path), or what is missing

    @property
    def degraded(self) -> bool:
        """Missing although this configuration relies on it (warned about)."""
        return self.used and not self.available

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        del out["name"]
        return out


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken or deliberately blocked install
        return False


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _packages(modules: dict[str, str]) -> tuple[bool, str]:
    """(all importable, what was found) for {import name: distribution name}."""
    missing = [dist for mod, dist in modules.items() if not _installed(mod)]
    if missing:
        return False, f"not installed: {', '.join(missing)}"
    found = [f"{dist} {_version(dist) or '(version unknown)'}" for dist in modules.values()]
    return True, ", ".join(found)


def _npm_version(package_dir: Path) -> str:
    try:
        version = json.loads((package_dir / "package.json").read_text(encoding="utf-8"))["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return "(version unknown)"
    return str(version)


def _node_found(t: tools.NodeTools, package: str, ready: Path | None) -> str:
    if t.node is None:
        return "node is not on PATH"
    if t.node_modules is None:
        return (
            f"node {t.node}; no node_modules with the tools (looked at SHOPLENS_NODE_MODULES "
            "and node_modules folders above the package and the working directory)"
        )
    if ready is None:
        return f"node {t.node}; {package} is missing or incomplete in {t.node_modules}"
    return f"node {t.node}; {package} {_npm_version(t.node_modules / package)} in {t.node_modules}"


def _node_capabilities() -> list[Capability]:
    t = tools.find_tools()
    return [
        Capability(
            name="khronos_validator",
            title="Khronos glTF validator (Node + gltf-validator)",
            available=t.validator is not None,
            used=True,
            enables="AR uploads are also checked by Khronos' reference glTF validator, and the "
            "phone-optimised variant is validated before it is served",
            without="AR uploads get Shoplens' own checks only, and phones get the original "
            "model (an optimised variant is served only once validated)",
            install=NODE_INSTALL,
            found=_node_found(t, "gltf-validator", t.validator),
        ),
        Capability(
            name="gltf_transform",
            title="glTF-Transform (mobile variant, Draco/meshopt decoding)",
            available=t.decoders is not None,
            used=True,
            enables="a smaller AR model for phones (meshopt geometry, WebP textures, "
            "simplified meshes), USDZ for Draco/meshopt-compressed uploads, zipped glTF "
            "packed and tidied",
            without="phones get the full original model, Draco/meshopt-compressed uploads get "
            "no USDZ (no iOS Quick Look), zipped glTF is packed by Shoplens' simpler packer",
            install=NODE_INSTALL,
            found=_node_found(t, "@gltf-transform/cli", t.decoders),
        ),
    ]


def _avif() -> tuple[bool, str]:
    from PIL import __version__ as pillow_version
    from PIL import features

    ok = bool(features.check("avif"))
    return ok, f"Pillow {pillow_version}" + ("" if ok else " without its AVIF plugin")


def check(settings: Settings) -> list[Capability]:
    """Every optional capability, available or not, for this install and ``settings``."""
    from shoplens.models.openclip import PREFIX as OPENCLIP_PREFIX

    usd_ok, usd_found = _packages({"pxr": "usd-core"})
    heif_ok, heif_found = _packages({"pillow_heif": "pillow-heif"})
    avif_ok, avif_found = _avif()
    export_ok, export_found = _packages(
        {"torch": "torch", "timm": "timm", "onnx": "onnx", "onnxscript": "onnxscript"}
    )
    clip_ok, clip_found = _packages({"torch": "torch", "open_clip": "open_clip_torch"})
    ray_ok, ray_found = _packages({"ray": "ray", "pyarrow": "pyarrow"})
    return [
        *_node_capabilities(),
        Capability(
            name="usdz",
            title="usd-core (USDZ for iOS Quick Look)",
            available=usd_ok,
            used=True,
            enables="each AR model is converted to USDZ, which iPhones and iPads need for AR",
            without="the AR part cannot load (usd-core is a dependency of Shoplens: reinstall it)",
            install="pip install usd-core",
            found=usd_found,
        ),
        Capability(
            name="heic",
            title="pillow-heif (HEIC/HEIF photos)",
            available=heif_ok,
            used=True,
            enables="HEIC/HEIF photos (iPhones' default) in searches and catalogs",
            without="HEIC/HEIF photos cannot be decoded",
            install="pip install pillow-heif",
            found=heif_found,
        ),
        Capability(
            name="avif",
            title="Pillow's AVIF plugin (AVIF photos)",
            available=avif_ok,
            used=True,
            enables="AVIF photos in searches and catalogs",
            without="AVIF photos cannot be decoded",
            install="pip install -U 'pillow>=11.2'",
            found=avif_found,
        ),
        Capability(
            name="export",
            title="the 'export' extra (torch, timm, onnx, onnxscript)",
            available=export_ok,
            # A running service has its model loaded already; exporting is a one-off.
            used=False,
            enables="exporting image models to ONNX: any model that is not already exported "
            "in the model cache",
            without="only models already exported (or shipped with Shoplens) can be served "
            "or indexed with",
            install="pip install 'shoplens[export]'",
            found=export_found,
        ),
        Capability(
            name="openclip",
            title="OpenCLIP (the 'openclip' extra)",
            available=clip_ok,
            used=settings.model.startswith(OPENCLIP_PREFIX),
            enables="OpenCLIP image models and their text tower (text search by meaning)",
            without="OpenCLIP models cannot be loaded; the EfficientNet models work as before",
            install="pip install 'shoplens[openclip]'",
            found=clip_found,
        ),
        Capability(
            name="ray",
            title="Ray (the 'ray' extra: distributed indexing)",
            available=ray_ok,
            used=settings.index_engine == "ray",
            enables="decoding and embedding catalog photos on a Ray cluster (index_engine=ray)",
            without="indexing runs in this process only (the local engine); with "
            "index_engine=ray, index runs fail",
            install="pip install 'shoplens[ray]' (on the driver and the workers)",
            found=ray_found,
        ),
    ]


def as_json(caps: list[Capability]) -> dict[str, dict[str, Any]]:
    """``{name: {title, available, used, enables, without, install, found}}``."""
    return {c.name: c.to_dict() for c in caps}


def warning_line(cap: Capability) -> str:
    """One log or status line for a degraded capability: what is lost and how to fix it."""
    return (
        f"{cap.title} is missing ({cap.found}): {cap.without}. To enable it: {cap.install} "
        "(`shoplens doctor` lists every optional capability)"
    )
