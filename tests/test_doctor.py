"""The optional capabilities as an operator sees them: `shoplens doctor` (a real
process, with and without Node on its PATH) and `shoplens status`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from shoplens.ar_assets import tools
from shoplens.cli import app

# A real catalog indexed by the real indexer, for `shoplens status`.
from tests.service.conftest import (
    built_data_dir,
    catalog_manifest,
    data_dir,
    embedder,
    indexed_catalogs,
    stand_in,
)

__all__ = ["built_data_dir", "catalog_manifest", "data_dir", "embedder", "indexed_catalogs"]
__all__ += ["stand_in"]

REPO = Path(__file__).resolve().parents[1]
EVERY = {"khronos_validator", "gltf_transform", "usdz", "heic", "avif", "export", "openclip", "ray"}
NODE = ("khronos_validator", "gltf_transform")


def _no_node(tmp_path: Path) -> str:
    empty = tmp_path / "no-node"
    empty.mkdir(exist_ok=True)
    return str(empty)


def _doctor(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shoplens.cli", "doctor", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, **env},
        timeout=120,
        check=False,
    )


def _doctor_json(**env: str) -> dict[str, Any]:
    p = _doctor("--json", **env)
    assert p.returncode == 0, p.stderr
    body: dict[str, Any] = json.loads(p.stdout)
    return body


def _have_node_tools() -> bool:
    t = tools.find_tools()
    return t.validator is not None and t.decoders is not None


def test_doctor_without_node(tmp_path: Path) -> None:
    body = _doctor_json(PATH=_no_node(tmp_path))
    caps = body["capabilities"]
    assert set(caps) == EVERY
    for name in NODE:
        assert (caps[name]["available"], caps[name]["used"]) == (False, True)
        assert caps[name]["found"] == "node is not on PATH"
    assert set(NODE) <= set(body["degraded"])
    for cap in caps.values():  # each says what it enables and how to get it
        assert cap["title"] and cap["enables"] and cap["without"] and cap["install"]

    p = _doctor(PATH=_no_node(tmp_path))
    assert p.returncode == 0, p.stderr  # a missing capability is a choice, not a failure
    out = p.stdout
    assert "[MISSING] Khronos glTF validator (Node + gltf-validator)" in out
    assert "[MISSING] glTF-Transform (mobile variant, Draco/meshopt decoding)" in out
    assert "enable:  install Node.js and npm" in out and "scripts/install-node-tools.sh" in out
    assert "without: this configuration uses it: phones get the full original model" in out
    last = out.strip().splitlines()[-1]
    assert "missing and used by this configuration: Khronos glTF validator" in last


def test_doctor_with_node() -> None:
    if not _have_node_tools():
        pytest.skip("node + node_modules (gltf-validator, @gltf-transform/cli) are not installed")
    body = _doctor_json()
    for name in NODE:
        assert body["capabilities"][name]["available"] is True
        assert "gltf" in body["capabilities"][name]["found"]
    assert not set(NODE) & set(body["degraded"])
    assert "[ok     ] Khronos glTF validator" in _doctor().stdout


def test_doctor_follows_the_configuration() -> None:
    # Ray is used only when the indexer is configured to run on it.
    assert _doctor_json()["capabilities"]["ray"]["used"] is False
    ray = _doctor_json(SHOPLENS_INDEX_ENGINE="ray")["capabilities"]["ray"]
    assert ray["used"] is True
    assert ray["install"] == "pip install 'shoplens[ray]' (on the driver and the workers)"


def test_status_names_what_is_missing(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    if _have_node_tools():
        out = runner.invoke(app, ["status", "--data-dir", str(data_dir)])
        assert out.exit_code == 0, out.output
        assert "capabilities available (shoplens doctor)" in out.output
        assert "Khronos" not in out.output
    monkeypatch.setenv("PATH", _no_node(tmp_path))
    out = runner.invoke(app, ["status", "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    missing = [ln for ln in out.output.splitlines() if ln.startswith("missing    ")]
    assert any("Khronos glTF validator" in ln and "shoplens doctor" in ln for ln in missing)
    assert any("glTF-Transform" in ln for ln in missing)
    out = runner.invoke(app, ["status", "--json", "--data-dir", str(data_dir)])
    assert out.exit_code == 0, out.output
    caps = json.loads(out.output)["capabilities"]
    assert set(caps) == EVERY
    assert caps["khronos_validator"]["available"] is False
