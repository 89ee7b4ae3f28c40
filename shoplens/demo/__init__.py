"""The bundled demo catalog: 81 grocery products and a few shopper photos.

Files ship as package data; these helpers locate them whether Shoplens runs
from a checkout or from an installed wheel.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Sample:
    """A shopper photo bundled for one-tap searches on the demo page."""

    file: str
    product_id: str  # the product the photo shows
    title: str

    @property
    def path(self) -> Path:
        return DEMO_DIR / "samples" / self.file


def manifest_path() -> Path:
    """The demo catalog manifest (CSV, image paths relative to it)."""
    return DEMO_DIR / "manifest.csv"


def samples() -> list[Sample]:
    """The bundled shopper photos, in display order."""
    with (DEMO_DIR / "samples" / "samples.csv").open(encoding="utf-8", newline="") as f:
        return [Sample(r["file"], r["product_id"], r["title"]) for r in csv.DictReader(f)]
