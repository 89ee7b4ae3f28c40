"""One USDZ per ``KHR_materials_variants`` entry.

AR Quick Look has no variant switch (and ignores USD variant sets in practice),
so each variant gets a USDZ of its own, with that variant's materials bound:
the AR block gives every entry of ``variants`` its own ``usdz_url``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shoplens.ar_assets.anchoring import Anchoring
from shoplens.ar_assets.usdz.build import UsdzFailed, UsdzResult, convert


@dataclass
class UsdzSet:
    default: UsdzResult
    variants: dict[str, UsdzResult] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)  # variant name -> why not

    @property
    def degraded(self) -> bool:
        return self.default.degraded or any(v.degraded for v in self.variants.values())


def convert_all(
    plain_glb: Path, workdir: Path, anchoring: Anchoring, variant_names: list[str]
) -> UsdzSet:
    """The default USDZ (UsdzFailed if even that fails) and one per named variant."""
    default = convert(plain_glb, workdir / "model.usdz", workdir / "usd", anchoring=anchoring)
    out = UsdzSet(default)
    if default.checker_errors:
        return out  # the variants would fail the same way
    for i, name in enumerate(variant_names):
        path = workdir / f"variant-{i}.usdz"
        try:
            result = convert(plain_glb, path, workdir / f"usd-v{i}", anchoring=anchoring, variant=i)
        except UsdzFailed as exc:
            out.failed[name] = str(exc)
            continue
        if result.checker_errors:
            out.failed[name] = f"failed the USD checks: {result.checker_errors[0]}"
            continue
        out.variants[name] = result
    return out
