"""The Khronos glTF validator, run through Node when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from shoplens.ar_assets import tools
from shoplens.ar_assets.report import Report, Severity

KHRONOS_TIMEOUT_S = 120.0


def run_khronos(path: Path, report: Report, prefix: str = "") -> dict[str, Any] | None:
    """Merge the Khronos validator's messages into ``report`` (None if it could not run)."""
    validator = tools.find_tools().validator
    if validator is None:
        report.khronos_validator = "unavailable (node or gltf-validator missing)"
        # A warning, not an info: the upload was checked less than it would be with
        # the tools installed, and the shop should hear it from the answer itself.
        report.warn(
            "KHRONOS_VALIDATOR_UNAVAILABLE",
            "the Khronos glTF validator is not installed here (Node and gltf-validator); "
            "only Shoplens' own checks ran (`shoplens doctor` says how to install it)",
        )
        return None
    script = tools.NODE_SCRIPTS / "khronos_validate.js"
    try:
        out = tools.run_node([str(script), str(validator), str(path)], timeout=KHRONOS_TIMEOUT_S)
        result: dict[str, Any] = json.loads(out)
    except (tools.ToolFailed, json.JSONDecodeError) as exc:
        report.khronos_validator = f"failed ({exc})"
        report.warn("KHRONOS_VALIDATOR_FAILED", f"the Khronos validator did not run: {exc}")
        return None
    issues = result.get("issues", {})
    report.khronos_validator = (
        f"{result.get('validatorVersion', '?')}: {issues.get('numErrors', 0)} errors, "
        f"{issues.get('numWarnings', 0)} warnings"
    )
    severities: dict[int, Severity] = {0: "error", 1: "warning", 2: "info"}
    for msg in issues.get("messages", []):
        sev = severities.get(int(msg.get("severity", 3)))
        if sev is None:
            continue  # hints
        pointer = msg.get("pointer") or (f"@{msg['offset']}" if "offset" in msg else "")
        report.add(
            sev,
            str(msg.get("code")),
            prefix + str(msg.get("message")),
            str(pointer),
            source="khronos",
        )
    if int(issues.get("numErrors", 0)) and not report.errors:
        report.add(
            "error", "KHRONOS_ERRORS", "the Khronos validator reported errors", source="khronos"
        )
    return result
