"""Reading uploaded files with a byte limit."""

from __future__ import annotations

from fastapi import UploadFile

from shoplens.errors import TooLarge

_CHUNK = 256 * 1024


async def read_limited(upload: UploadFile, limit: int, *, what: str = "image") -> bytes:
    """The upload's bytes; stops reading and raises 413 as soon as ``limit`` is passed.

    The whole request body is already capped by the app's ``max_body_size``
    (``settings.max_request_bytes``), so this never spools more than that.
    """
    if upload.size is not None and upload.size > limit:
        raise TooLarge(_message(what, limit))
    chunks: list[bytes] = []
    total = 0
    while chunk := await upload.read(_CHUNK):
        total += len(chunk)
        if total > limit:
            raise TooLarge(_message(what, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def _message(what: str, limit: int) -> str:
    return f"the {what} is larger than {limit / 1_048_576:.1f} MiB (SHOPLENS_MAX_IMAGE_BYTES)"
