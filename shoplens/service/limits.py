"""Request body cap: refuse oversized uploads before they are spooled to disk."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shoplens.errors import TooLarge
from shoplens.service.handlers import error_response


class BodyLimitMiddleware:
    """Answer 413 at once when Content-Length says too much; otherwise count the bytes
    as they arrive and stop reading past the limit (chunked uploads).

    A limit hit while the form is being parsed surfaces as :class:`TooLarge`,
    which the error handlers map to the contract's 413 body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = (
            f"the request body is larger than {self.max_bytes / 1_048_576:.1f} MiB "
            "(SHOPLENS_MAX_REQUEST_BYTES)"
        )
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > self.max_bytes:
                    response = error_response(413, TooLarge.code, message)
                    await response(scope, receive, send)
                    return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    raise TooLarge(message)
            return msg

        await self.app(scope, limited_receive, send)
