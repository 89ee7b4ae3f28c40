"""Request ids and access logs.

Every answer carries ``X-Request-ID``: the caller's own id when it is sane
(1-128 chars of ``A-Za-z0-9._:-``, so it can be logged and echoed without
header or log injection), otherwise a fresh one. The id is also put in error
bodies (``error.request_id``) and in one access-log line per request, so an
operator can find the log line of the answer a shopper reports.
"""

from __future__ import annotations

import contextvars
import logging
import re
import time
import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

access_log = logging.getLogger("shoplens.access")

HEADER = "x-request-id"
_SANE = re.compile(rb"\A[A-Za-z0-9._:-]{1,128}\Z")
_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "shoplens_request_id", default=None
)


def current_request_id() -> str | None:
    """The id of the request being answered in this context, if any."""
    return _request_id.get()


def incoming_id(scope: Scope) -> str | None:
    """The caller's ``X-Request-ID`` when it is sane, else None (one is generated)."""
    for name, value in scope.get("headers", ()):
        if name == HEADER.encode():
            return value.decode("ascii") if _SANE.match(value) else None
    return None


class RequestIdMiddleware:
    """Outermost middleware: sets the id, echoes it, writes the access-log line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_id(scope) or uuid.uuid4().hex
        token = _request_id.set(rid)
        started = time.perf_counter()
        status = 0
        sent = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, sent
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [
                    (k, v) for k, v in message.get("headers", ()) if k.lower() != HEADER.encode()
                ]
                headers.append((HEADER.encode(), rid.encode()))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            client = scope.get("client")
            access_log.info(
                '%s "%s %s" %s %d %.1fms rid=%s',
                client[0] if client else "-",
                scope.get("method", "-"),
                scope.get("path", "-"),
                status or "-",
                sent,
                (time.perf_counter() - started) * 1e3,
                rid,
            )
            _request_id.reset(token)
