"""The validation report: what is wrong (errors), risky (warnings) or worth knowing (infos)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass(frozen=True)
class Issue:
    code: str
    message: str
    pointer: str = ""
    source: str = "shoplens"  # "shoplens", "khronos" or "usd"


@dataclass
class Report:
    """Everything the checks found, plus the facts measured on the way."""

    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    infos: list[Issue] = field(default_factory=list)
    khronos_validator: str = "not run"
    stats: dict[str, Any] = field(default_factory=dict)
    # The USDZ for Quick Look: its check, whether it is degraded, and per material
    # and texture what it approximates or lost (``fidelity.usdz_section``).
    usdz: dict[str, Any] = field(default_factory=dict)

    def add(
        self,
        severity: Severity,
        code: str,
        message: str,
        pointer: str = "",
        source: str = "shoplens",
    ) -> None:
        bucket = {"error": self.errors, "warning": self.warnings, "info": self.infos}[severity]
        issue = Issue(code, message, pointer, source)
        if issue not in bucket:
            bucket.append(issue)

    def error(self, code: str, message: str, pointer: str = "") -> None:
        self.add("error", code, message, pointer)

    def warn(self, code: str, message: str, pointer: str = "") -> None:
        self.add("warning", code, message, pointer)

    def info(self, code: str, message: str, pointer: str = "") -> None:
        self.add("info", code, message, pointer)

    def merge(self, other: Report) -> None:
        groups: list[tuple[Severity, list[Issue]]] = [
            ("error", other.errors),
            ("warning", other.warnings),
            ("info", other.infos),
        ]
        for sev, items in groups:
            for i in items:
                self.add(sev, i.code, i.message, i.pointer, i.source)
        self.stats.update(other.stats)
        self.usdz.update(other.usdz)

    @property
    def ok(self) -> bool:
        return not self.errors

    def first_error(self) -> str:
        if not self.errors:
            return ""
        e = self.errors[0]
        where = f" at {e.pointer}" if e.pointer else ""
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        return f"{e.code}: {e.message}{where}{more}"

    def summary(self) -> str:
        return (
            f"{len(self.errors)} errors, {len(self.warnings)} warnings, "
            f"{len(self.infos)} infos (Khronos validator: {self.khronos_validator})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "errors": [asdict(i) for i in self.errors],
            "warnings": [asdict(i) for i in self.warnings],
            "infos": [asdict(i) for i in self.infos],
            "khronos_validator": self.khronos_validator,
            "stats": self.stats,
            "usdz": self.usdz,
        }
