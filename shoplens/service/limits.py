"""Request body cap: refuse oversized uploads before they are spooled to disk."""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoplens.errors import TooLarge
from shoplens.service.handlers import error_response


class BodyLimitMiddleware:
    """Answer 413 at once when Content-Length says too much; otherwise count the bytes
    as they arrive and stop reading past the limit (chunked uploads).

    A limit hit while the form is being parsed surfaces as :class:`TooLarge`,
    which the error handlers map to the contract's 413 body.
    """

    # 3D models are legitimately bigger than photos: their upload route gets the
    # asset cap (plus room for the multipart envelope) instead of the request cap.
    _ASSET_UPLOAD = re.compile(r"^/v1/products/[^/]+/ar/?$")
    _ENVELOPE = 1_048_576

    def __init__(self, app: ASGIApp, max_bytes: int, max_asset_bytes: int | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_asset_bytes = max_asset_bytes

    def _limit_for(self, scope: Scope) -> tuple[int, str]:
        if (
            self.max_asset_bytes is not None
            and scope.get("method") == "PUT"
            and self._ASSET_UPLOAD.match(scope.get("path", ""))
        ):
            limit = max(self.max_bytes, self.max_asset_bytes + self._ENVELOPE)
            return limit, "SHOPLENS_MAX_ASSET_BYTES"
        return self.max_bytes, "SHOPLENS_MAX_REQUEST_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes, setting = self._limit_for(scope)
        message = f"the request body is larger than {max_bytes / 1_048_576:.1f} MiB ({setting})"
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > max_bytes:
                    response = error_response(413, TooLarge.code, message)
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > max_bytes:
                    raise TooLarge(message)
            return msg

        await self.app(scope, limited_receive, send)
