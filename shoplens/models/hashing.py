"""SHA-256 of weight files, remembered so a 1 GB checkpoint is hashed once.

The hash names the export folder, so it is needed on every load; the memo is
keyed by (path, size, mtime) and lives in the model cache beside the exports.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

from shoplens.files.atomic import sha256_file, write_atomic


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
    sha = sha256_file(path)
    if memo is not None:
        # Best effort: a read-only cache only costs a re-hash next time.
        with contextlib.suppress(OSError):
            body = json.dumps({"key": key, "sha256": sha}).encode("utf-8")
            write_atomic(memo, body, fsync=False)
    return sha
