"""SHA-256 of weight files, remembered so a 1 GB checkpoint is hashed once.

The hash names the export folder, so it is needed on every load; the memo is
keyed by (path, size, mtime) and lives in the model cache beside the exports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path


def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    path = Path(path).resolve()
    stat = path.stat()
    key = {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    memo = None
    if memo_dir is not None:
        memo = memo_dir / ".hashes" / (hashlib.sha1(str(path).encode()).hexdigest() + ".json")
        with contextlib.suppress(OSError, ValueError):
            saved = json.loads(memo.read_text(encoding="utf-8"))
            if isinstance(saved, dict) and saved.get("key") == key:
                return str(saved["sha256"])
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    sha = digest.hexdigest()
    if memo is not None:
        # Best effort: a read-only cache only costs a re-hash next time.
        with contextlib.suppress(OSError):
            memo.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"key": key, "sha256": sha}), encoding="utf-8")
            os.replace(tmp, memo)
    return sha
