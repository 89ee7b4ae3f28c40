"""``python -m tests.indexer.index_worker MANIFEST DATA_DIR BATCH [HOLD_AFTER]``: a real
indexing process (run_index with the deterministic test embedder) for kill-and-resume
tests. With ``HOLD_AFTER`` the run commits that many batches, prints ``held`` and waits
in the next one, so the test kills it mid-run at a point it knows."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index
from shoplens.models.base import ImageEmbedder
from tests.held_embedder import HeldEmbedder
from tests.indexer.helpers import HistEmbedder


def _announce(held: HeldEmbedder) -> None:
    held.held.wait()
    print("held", flush=True)


def main() -> None:
    manifest, data_dir, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    embedder: ImageEmbedder = HistEmbedder()
    if len(sys.argv) > 4:
        held = HeldEmbedder(embedder, after=int(sys.argv[4]))
        threading.Thread(target=_announce, args=(held,), daemon=True).start()
        embedder = held
    settings = Settings(data_dir=Path(data_dir), batch_size=batch)
    report = run_index(settings, Path(manifest), embedder=embedder)
    print(report.summary_line(), flush=True)


if __name__ == "__main__":
    main()
