"""Query parameters shared by the search routes (one definition, one OpenAPI description)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from shoplens.errors import BadParameter
from shoplens.indexer.catalog.types import SearchFilters

K = Annotated[int, Query(ge=1, le=100, description="how many products to return (1-100)")]


@dataclass(frozen=True)
class SearchParams:
    k: int
    filters: SearchFilters


def _finite(name: str, value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise BadParameter(f"{name} must be a finite number (got {value})")
    return value


async def search_params(
    k: K = 10,
    category: Annotated[
        list[str] | None,
        Query(description="only these categories (repeat the parameter for several)"),
    ] = None,
    in_stock: Annotated[
        bool | None, Query(description="true: only in-stock products; false: only sold-out")
    ] = None,
    min_price: Annotated[float | None, Query(description="lowest price, inclusive")] = None,
    max_price: Annotated[float | None, Query(description="highest price, inclusive")] = None,
    min_score: Annotated[
        float | None, Query(ge=-1.0, le=1.0, description="drop results scoring below this")
    ] = None,
    attr: Annotated[
        list[str] | None,
        Query(
            description="another manifest column must equal a value, 'name:value' "
            "(repeatable; all must match), e.g. attr=brand:acme",
            examples=["brand:acme"],
            # Documented for each value; the parsing below is what enforces it.
            json_schema_extra={"items": {"type": "string", "pattern": "^[^:]+:"}},
        ),
    ] = None,
) -> SearchParams:
    _finite("min_price", min_price)
    _finite("max_price", max_price)
    if min_price is not None and max_price is not None and min_price > max_price:
        raise BadParameter(f"min_price ({min_price}) is greater than max_price ({max_price})")
    categories = tuple(c.strip() for c in category or () if c.strip())
    attributes: dict[str, str] = {}
    for item in attr or ():
        name, sep, value = item.partition(":")
        if not sep or not name.strip():
            raise BadParameter(f"attr must be 'name:value', e.g. attr=brand:acme (got {item!r})")
        attributes[name.strip()] = value.strip()
    return SearchParams(
        k=k,
        filters=SearchFilters(
            categories=categories,
            in_stock=in_stock,
            min_price=min_price,
            max_price=max_price,
            min_score=min_score,
            attributes=attributes,
        ),
    )


# async although it never awaits: a plain def dependency costs a thread-pool round trip.
SearchParamsDep = Annotated[SearchParams, Depends(search_params)]
