"""The product id rule every part checks: the manifest, the product routes and the AR assets.

One pattern, so an id the indexer accepts is one the service and the AR store
accept too. Full match (``\\A...\\Z``): ``$`` would also accept a trailing
newline, which the error messages ("1-128 characters of A-Za-z0-9._:-") rule out.

Imports nothing of Shoplens.
"""

from __future__ import annotations

import re

PRODUCT_ID_RE = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")
# The same rule as a JSON Schema (ECMA-262) pattern, for the OpenAPI description.
PRODUCT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
