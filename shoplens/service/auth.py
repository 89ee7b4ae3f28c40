"""Admin authentication: a bearer token compared in constant time.

Routes ask for it through :func:`shoplens.service.deps.require_admin`.
"""

from __future__ import annotations

import hmac

from shoplens.config import Settings
from shoplens.errors import Forbidden, Unauthorized


def check_admin(settings: Settings, authorization: str | None) -> None:
    """Raise unless ``authorization`` carries the configured admin token.

    With no token configured, admin routes are disabled (403). The answer
    never depends on whether the addressed product exists, so refusals leak
    nothing about the catalog.
    """
    if settings.admin_token is None or not settings.admin_token.get_secret_value():
        raise Forbidden("admin endpoints are disabled: set SHOPLENS_ADMIN_TOKEN to enable them")
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <admin token>'")
    expected = settings.admin_token.get_secret_value().encode()
    if not hmac.compare_digest(token.strip().encode(), expected):
        raise Unauthorized("invalid admin token")
