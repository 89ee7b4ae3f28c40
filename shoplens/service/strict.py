"""Unknown query parameters and form fields are a 400 ``unknown_parameter`` (API v1.1).

A misspelt filter (``?catgory=Milk``) or a filter sent as a multipart form field
(the natural mistake beside the AR upload's form fields) would otherwise be
ignored without a word, and the shopper would get unfiltered results.

What a route accepts is read from its own declaration (the FastAPI dependant
tree: query parameters, form and file fields, a JSON body), once per route, so
no list is kept by hand. One app-wide dependency, :class:`ParameterCheck`, runs
first on every route; only the versioned API (``/v1/...``) is strict. Pages,
stored files, probes and the docs stay lenient: a shared link to a viewer page
may well carry ``?utm_source=...``.

Form field names are read from the form Starlette parsed for the route (it
caches it on the request), so a file body is never read twice; the body caps
of ``service/limits.py`` and ``service/uploads.py`` apply as before.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.params import Form
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from shoplens.errors import BadParameter

STRICT_PREFIX = "/v1/"
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


@dataclass(frozen=True)
class Accepted:
    """What one route takes besides its path and headers."""

    operation: str  # e.g. "POST /v1/search": how the message names the route
    strict: bool
    query: tuple[str, ...]  # in declaration order, for the message
    form: tuple[str, ...]
    json_body: bool


def _dependants(root: Dependant) -> Iterator[Dependant]:
    stack = [root]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.dependencies))


def accepted_by(dependant: Dependant, operation: str, strict: bool) -> Accepted:
    """The names a route's dependant tree declares (sub-dependencies included)."""
    query: dict[str, None] = {}
    form: dict[str, None] = {}
    json_body = False
    for dep in _dependants(dependant):
        for field in dep.query_params:
            model = field.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):  # a query model
                query.update(dict.fromkeys(f.alias or n for n, f in model.model_fields.items()))
            else:
                query[field.alias] = None
        for field in dep.body_params:
            if isinstance(field.field_info, Form):  # File is a Form too
                form[field.alias] = None
            else:
                json_body = True
    return Accepted(operation, strict, tuple(query), tuple(form), json_body)


def _operation(methods: set[str] | None, path: str) -> str:
    verbs = sorted((methods or set()) - {"HEAD"}) or ["GET"]
    return f"{'/'.join(verbs)} {path}"


def _suggest(name: str, names: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _listing(accepted: Accepted) -> str:
    parts = []
    if accepted.query:
        parts.append("query parameters: " + ", ".join(accepted.query))
    if accepted.form:
        parts.append("form fields: " + ", ".join(accepted.form))
    if accepted.json_body:
        parts.append("a JSON body")
    return f" (it takes {'; '.join(parts)})" if parts else " (it takes no parameters)"


def query_message(name: str, accepted: Accepted) -> str:
    """Why ``?name=`` is refused, and what the route takes instead."""
    head = f"query parameter {name!r} is not a parameter of {accepted.operation}"
    if name in accepted.form:
        return f"{head}: {name!r} is a form field of the multipart body"
    return head + (_suggest(name, accepted.query) or _listing(accepted))


def form_message(name: str, accepted: Accepted) -> str:
    """Why form field ``name`` is refused; a filter sent as a form field says where it goes."""
    head = f"form field {name!r} is not a parameter of {accepted.operation}"
    if name in accepted.query:
        return f"{head}: filters are query parameters (?{name}=...)"
    close = difflib.get_close_matches(name, accepted.query, n=1, cutoff=0.6)
    if close:
        return f"{head}; did you mean the query parameter {close[0]!r} (?{close[0]}=...)?"
    if accepted.json_body and not accepted.form:
        return f"{head}: send a JSON body (Content-Type: application/json)"
    return head + (_suggest(name, accepted.form) or _listing(accepted))


def _refuse(messages: list[str]) -> BadParameter:
    extra = f" (and {len(messages) - 1} more unknown)" if len(messages) > 1 else ""
    return BadParameter(messages[0] + extra, code="unknown_parameter")


class ParameterCheck:
    """The app-wide dependency: 400 ``unknown_parameter`` for names a route does not declare.

    It runs before the route's own dependencies, so a misspelt name is reported
    as such rather than as the missing or invalid value it caused.
    """

    def __init__(self) -> None:
        # By id of the route object (routes are unhashable); filled on first use
        # because routers are included after the app, and this dependency, exist.
        self._routes: dict[int, Accepted] = {}

    def _accepted(self, request: Request, route: APIRoute) -> Accepted:
        found = self._routes.get(id(route))
        if found is None:
            for ctx in iter_route_contexts(request.app.routes):
                original = ctx.original_route
                if isinstance(original, APIRoute) and id(original) not in self._routes:
                    path = str(ctx.path_format)
                    self._routes[id(original)] = accepted_by(
                        ctx.dependant,
                        _operation(ctx.methods, path),
                        strict=path.startswith(STRICT_PREFIX),
                    )
            found = self._routes.get(id(route))
            if found is None:  # a route outside the app's tables: nothing to check against
                found = Accepted("", False, (), (), False)
                self._routes[id(route)] = found
        return found

    async def __call__(self, request: Request) -> None:
        route = request.scope.get("route")
        if not isinstance(route, APIRoute):
            return
        accepted = self._accepted(request, route)
        if not accepted.strict:
            return
        known = set(accepted.query)
        unknown = [n for n in dict.fromkeys(request.query_params.keys()) if n not in known]
        if unknown:
            raise _refuse([query_message(n, accepted) for n in unknown])
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type not in _FORM_TYPES:
            return
        if accepted.form:
            # FastAPI parsed the form before solving dependencies; this is its cached copy.
            names = list((await request.form()).keys())
        else:
            # Nothing else reads this body: parse it for its names and close it again.
            async with request.form() as form:
                names = list(form.keys())
        allowed = set(accepted.form)
        bad = [n for n in dict.fromkeys(names) if n not in allowed]
        if bad:
            raise _refuse([form_message(n, accepted) for n in bad])
