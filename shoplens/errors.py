"""One error root. Every error a client or operator can cause is a subclass.

Each class carries the HTTP status and the snake_case code of the public
contract, so one handler in the service maps any of them to
``{"error": {"code", "message"}}`` and the CLI prints the message as one line.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ShoplensError(Exception):
    """Base of all errors Shoplens raises on purpose."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.details = details


class BadParameter(ShoplensError):
    status = 400
    code = "bad_parameter"


class Unauthorized(ShoplensError):
    status = 401
    code = "unauthorized"


class Forbidden(ShoplensError):
    status = 403
    code = "forbidden"


class NotFound(ShoplensError):
    status = 404
    code = "not_found"


class Conflict(ShoplensError):
    status = 409
    code = "conflict"


class TooLarge(ShoplensError):
    status = 413
    code = "too_large"


class UnsupportedMedia(ShoplensError):
    """The bytes are not a format we accept (detected from content)."""

    status = 415
    code = "unsupported_media_type"


class InvalidContent(ShoplensError):
    """The format is right but the content is broken or unacceptable."""

    status = 422
    code = "invalid_content"


class InvalidImage(InvalidContent):
    code = "invalid_image"


class InvalidAsset(InvalidContent):
    code = "invalid_asset"


class Gone(ShoplensError):
    """The thing asked about existed and is no longer usable (a search too old for feedback)."""

    status = 410
    code = "gone"


class RateLimited(ShoplensError):
    status = 429
    code = "rate_limited"


class NotReady(ShoplensError):
    status = 503
    code = "not_ready"


class ManifestError(ShoplensError):
    """The manifest as a whole cannot be read (bad rows are rejects, not this)."""

    code = "bad_manifest"


class ModelMismatch(ShoplensError):
    """A snapshot or cache was made by another model than the configured one."""

    status = 409
    code = "model_mismatch"


class SnapshotError(ShoplensError):
    """A snapshot is missing, corrupt or otherwise unusable."""

    status = 503
    code = "snapshot_invalid"


class ModelUnavailable(ShoplensError):
    """The configured model cannot be loaded (missing weights, missing extra)."""

    status = 503
    code = "model_unavailable"
