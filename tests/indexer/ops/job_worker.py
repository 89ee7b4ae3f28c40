"""``python -m tests.indexer.ops.job_worker DATABASE_URL DATA_DIR MANIFEST``: a replica's
job runner in a process of its own, for the takeover test. It submits a
re-index job, runs it with the deterministic test embedder held after one
batch, prints ``held <owner>`` and waits there, so the test SIGKILLs it mid-job
at a point it knows."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from pydantic import SecretStr

from shoplens.config import Settings
from shoplens.indexer.ops.jobs import JobRunner
from tests.held_embedder import HeldEmbedder
from tests.indexer.helpers import HistEmbedder


def main() -> None:
    url, data_dir, manifest = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = Settings(
        data_dir=data_dir,
        database_url=SecretStr(url),
        batch_size=4,
        replica_heartbeat_s=0.2,
        replica_stale_s=1.0,
    )
    held = HeldEmbedder(HistEmbedder(), after=1)
    runner = JobRunner(settings, held, owner="replica-killed")
    runner.start()
    runner.submit(manifest, prune=False)
    held.held.wait()
    print("held replica-killed", flush=True)
    while True:  # until SIGKILL
        time.sleep(1)


if __name__ == "__main__":
    main()
