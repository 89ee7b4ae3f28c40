"""A re-run that changes nothing reuses the published snapshot's adaptation instead of refitting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index
from tests.indexer.helpers import HistEmbedder
from tests.indexer.serving.test_adaptation import _catalog


def _adaptation_facts(settings: Settings, snapshot_id: str) -> dict[str, object]:
    facts = json.loads((settings.snapshots_dir / snapshot_id / "facts.json").read_text())
    adaptation: dict[str, object] = facts["adaptation"]
    return adaptation


def _matrix(settings: Settings, snapshot_id: str) -> np.ndarray:
    folder = settings.snapshots_dir / snapshot_id / "adapt"
    (npy,) = [p for p in folder.glob("*.npy") if "matrix" in p.name]
    out: np.ndarray = np.load(npy)
    return out


def test_unchanged_catalog_reuses_the_fit_and_a_change_refits(
    tmp_path: Path, hist: HistEmbedder
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    manifest = _catalog(tmp_path / "cat", 6, 4)
    first = run_index(settings, manifest, embedder=hist)
    a1 = _adaptation_facts(settings, first.snapshot_id)
    assert a1["reused"] is False

    again = run_index(settings, manifest, embedder=hist)
    assert again.indexed == 0 and again.snapshot_id != first.snapshot_id
    a2 = _adaptation_facts(settings, again.snapshot_id)
    assert a2["reused"] is True and a2["fingerprint"] == a1["fingerprint"]
    assert np.array_equal(
        _matrix(settings, again.snapshot_id), _matrix(settings, first.snapshot_id)
    )

    bigger = _catalog(tmp_path / "cat", 7, 4)  # one more product: a new fit
    third = run_index(settings, bigger, embedder=hist)
    a3 = _adaptation_facts(settings, third.snapshot_id)
    assert a3["reused"] is False and a3["fingerprint"] != a1["fingerprint"]
