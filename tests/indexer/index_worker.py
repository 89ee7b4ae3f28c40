"""``python -m tests.indexer.index_worker MANIFEST DATA_DIR BATCH``: a real indexing
process (run_index with the deterministic test embedder) for kill-and-resume tests."""

from __future__ import annotations

import sys
from pathlib import Path

from shoplens.config import Settings
from shoplens.indexer.ops.build import run_index
from tests.indexer.helpers import HistEmbedder


def main() -> None:
    manifest, data_dir, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
    settings = Settings(data_dir=Path(data_dir), batch_size=batch)
    report = run_index(settings, Path(manifest), embedder=HistEmbedder())
    print(report.summary_line(), flush=True)


if __name__ == "__main__":
    main()
