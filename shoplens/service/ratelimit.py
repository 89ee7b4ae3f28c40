"""Per-client rate limit: a token bucket per client address, for every route but
health checks, metrics and static files.

``settings.rate_limit_per_minute`` tokens at most (the allowed burst), refilled
continuously at that rate, so there is no window edge where twice the limit
gets through. 0 turns it off (the default, for the demo). The client is the
connection's peer address: ``X-Forwarded-For`` is not trusted (a client could
pick a fresh address per request); behind a proxy run uvicorn with
``--proxy-headers --forwarded-allow-ips`` so the peer is the real client.

Replicas (``SHOPLENS_DATABASE_URL``): the limit is the whole service's, and no
request asks the database about it. Each replica enforces its share, the
limit divided by the number of live replicas
(:mod:`shoplens.indexer.ops.replicas`, recounted on every replica heartbeat:
:meth:`TokenBuckets.set_share`). Behind a load balancer that spreads a
client's requests evenly (round robin, least connections) that admits the
configured limit overall; one that pins a client to one replica (sticky
sessions, hashing on the address) admits it only its replica's share.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from shoplens.errors import RateLimited
from shoplens.service.handlers import error_response

EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
EXEMPT_PREFIXES = ("/static/",)
MAX_CLIENTS = 10_000


class TokenBuckets:
    """Buckets by key, least recently seen forgotten first past ``max_clients``."""

    def __init__(
        self,
        per_minute: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_minute = per_minute
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self.set_share(1)

    def set_share(self, replicas: int) -> None:
        """Admit this replica's share of the limit: ``per_minute / replicas``
        (at least one request a minute). Full buckets shrink at their next take."""
        self.replicas = max(1, replicas)
        self.capacity = max(1.0, self.per_minute / self.replicas)
        self.rate = self.capacity / 60.0  # tokens per second

    def take(self, key: str) -> float:
        """Spend one token; 0.0 when allowed, else the seconds until one is back."""
        now = self.clock()
        tokens, last = self._buckets.pop(key, (self.capacity, now))
        tokens = min(self.capacity, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0.0
        else:
            self._buckets[key] = (tokens, now)
            wait = (1.0 - tokens) / self.rate
        while len(self._buckets) > self.max_clients:
            self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimitMiddleware:
    """429 ``rate_limited`` with ``Retry-After`` (whole seconds) when a client's bucket is empty."""

    def __init__(self, app: ASGIApp, per_minute: int, buckets: TokenBuckets | None = None) -> None:
        self.app = app
        self.per_minute = per_minute
        # ``buckets`` from the app factory: the replica heartbeat updates its share.
        if buckets is None and per_minute > 0:
            buckets = TokenBuckets(per_minute)
        self.buckets = buckets

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.buckets is None
            or scope["type"] != "http"
            or scope.get("method") == "OPTIONS"
            or scope.get("path", "") in EXEMPT_PATHS
            or scope.get("path", "").startswith(EXEMPT_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "unknown")
        if wait > 0:
            retry = max(1, math.ceil(wait))
            share = self.buckets.replicas
            each = f" ({self.buckets.capacity:g} on each of {share} replicas)" if share > 1 else ""
            response = error_response(
                429,
                RateLimited.code,
                f"more than {self.per_minute} requests a minute from this address{each}; "
                f"retry in {retry} s",
                {"Retry-After": str(retry)},
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)
