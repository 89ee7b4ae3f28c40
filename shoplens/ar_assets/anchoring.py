"""Where an AR viewer anchors a product, from the placement the shop gave it.

AR Quick Look reads Apple's "Preliminary" USDZ schemas for AR (the ones Reality
Composer writes): ``Preliminary_AnchoringAPI`` applied to a prim, with
``uniform token preliminary:anchoring:type`` = plane | image | face | none and,
for planes, ``uniform token preliminary:planeAnchoring:alignment`` = horizontal |
vertical | any (developer.apple.com/documentation/usd/preliminary-anchoringapi,
.../preliminary-anchoring-type, .../preliminary-planeanchoring-alignment).
``usdz/build.py`` writes them; the AR block and the viewer page report ``label``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchoring:
    type: str  # preliminary:anchoring:type
    alignment: str | None = None  # preliminary:planeAnchoring:alignment, planes only

    @property
    def label(self) -> str:
        """The public name: ``plane-horizontal``, ``plane-vertical`` or ``face``."""
        return f"{self.type}-{self.alignment}" if self.alignment else self.type


HORIZONTAL_PLANE = Anchoring("plane", "horizontal")
VERTICAL_PLANE = Anchoring("plane", "vertical")
FACE = Anchoring("face")

BY_PLACEMENT: dict[str, Anchoring] = {
    "floor": HORIZONTAL_PLANE,
    "table": HORIZONTAL_PLANE,
    "wall": VERTICAL_PLANE,
    "face": FACE,
    "head": FACE,  # ARKit's face anchor tracks the whole head: hats and glasses alike
    # AR Quick Look has no body anchors (the schema knows plane, image and face
    # only), so a watch or a shoe falls back to a horizontal plane, true to scale.
    "wrist": HORIZONTAL_PLANE,
    "foot": HORIZONTAL_PLANE,
}


def for_placement(placement: str) -> Anchoring:
    """The anchoring of a (checked) placement; ValueError for any other string."""
    try:
        return BY_PLACEMENT[placement]
    except KeyError:
        raise ValueError(f"no anchoring for placement {placement!r}") from None
