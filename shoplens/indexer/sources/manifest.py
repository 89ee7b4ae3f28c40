"""Catalog manifests: CSV (header row) or JSON Lines, one row per product image.

Bad rows become :class:`Reject` entries with the line number a person sees in
an editor (CSV header = line 1); they never stop the good rows. Only a
manifest that cannot be read at all raises :class:`ManifestError`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from shoplens.errors import BadParameter, ManifestError
from shoplens.ids import PRODUCT_ID_RE
from shoplens.indexer.catalog.types import ProductRecord

CURRENCY_RE = re.compile(r"^[A-Z]{3}$")
TEXT_COLUMNS = ("title", "category", "description", "url")
KNOWN_COLUMNS = ("product_id", "image", *TEXT_COLUMNS, "price", "currency", "in_stock")
_TRUE = {"true", "1", "yes", "y", "t"}
_FALSE = {"false", "0", "no", "n", "f"}
MAX_TEXT = 10_000


@dataclass(frozen=True)
class Reject:
    line: int
    product_id: str | None
    reason: str


@dataclass(frozen=True)
class ImageRef:
    """One image row: where its bytes come from."""

    line: int
    product_id: str
    source: str  # the manifest's value, as written
    path: Path | None = None  # local file, resolved
    url: str | None = None  # http(s) URL, for a fetcher


@dataclass
class Manifest:
    path: Path
    products: dict[str, ProductRecord] = field(default_factory=dict)
    images: list[ImageRef] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)
    rows: int = 0
    # Products with at least one rejected row: their earlier images are kept.
    partial: set[str] = field(default_factory=set)

    def reject(self, line: int, product_id: str | None, reason: str) -> None:
        self.rejects.append(Reject(line, product_id, reason))
        if product_id is not None:
            self.partial.add(product_id)


class RowError(ValueError):
    """A bad value in one row (becomes a Reject)."""


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        s = value.strip()
    elif isinstance(value, bool | int | float):
        s = json.dumps(value)
    else:
        s = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return s or None


def parse_price(value: Any) -> float | None:
    s = _text(value)
    if s is None:
        return None
    try:
        d = Decimal(s)
    except InvalidOperation:
        raise RowError(f"price {s!r} is not a decimal number") from None
    if not d.is_finite() or d < 0:
        raise RowError(f"price {s!r} must be a non-negative number")
    f = float(d)
    if not math.isfinite(f):
        raise RowError(f"price {s!r} is out of range")
    return f


def parse_currency(value: Any) -> str | None:
    s = _text(value)
    if s is None:
        return None
    if not CURRENCY_RE.match(s.upper()):
        raise RowError(f"currency {s!r} is not an ISO 4217 code (3 letters, e.g. EUR)")
    return s.upper()


def parse_bool(value: Any, *, default: bool = True) -> bool:
    if isinstance(value, bool):
        return value
    s = _text(value)
    if s is None:
        return default
    if s.lower() in _TRUE:
        return True
    if s.lower() in _FALSE:
        return False
    raise RowError(f"in_stock {s!r} is not one of true/false/1/0/yes/no")


def parse_product_id(value: Any) -> str:
    s = _text(value)
    if s is None:
        raise RowError("missing product_id")
    if not PRODUCT_ID_RE.match(s):
        raise RowError(f"product_id {s[:140]!r} must be 1-128 characters of A-Za-z0-9._:-")
    return s


def product_from_mapping(row: Mapping[str, Any]) -> ProductRecord:
    """A product from manifest columns (``image`` ignored); ``RowError`` if a value is bad."""
    cols = {str(k).strip(): v for k, v in row.items() if k is not None}
    if any("\x00" in k or (isinstance(v, str) and "\x00" in v) for k, v in cols.items()):
        # PostgreSQL's text cannot hold one: refused on every engine alike.
        raise RowError("a column name or value contains a NUL character")
    lower = {k.lower(): k for k in cols}
    get = {name: cols.get(lower.get(name, name)) for name in KNOWN_COLUMNS}
    texts: dict[str, str | None] = {}
    for name in TEXT_COLUMNS:
        t = _text(get[name])
        if t is not None and len(t) > MAX_TEXT:
            raise RowError(f"{name} is longer than {MAX_TEXT} characters")
        texts[name] = t
    attributes: dict[str, str] = {}
    for k, v in cols.items():
        if k.lower() in KNOWN_COLUMNS or not k:
            continue
        t = _text(v)
        if t is not None:
            attributes[k] = t
    return ProductRecord(
        product_id=parse_product_id(get["product_id"]),
        title=texts["title"],
        category=texts["category"],
        description=texts["description"],
        url=texts["url"],
        price=parse_price(get["price"]),
        currency=parse_currency(get["currency"]),
        in_stock=parse_bool(get["in_stock"]),
        attributes=attributes,
    )


def validate_product(product: ProductRecord) -> ProductRecord:
    """Check a product built in code (the service's PUT); ``BadParameter`` if invalid."""
    try:
        parse_product_id(product.product_id)
        currency = parse_currency(product.currency)
        if product.price is not None:
            parse_price(repr(float(product.price)))
    except RowError as exc:
        raise BadParameter(str(exc)) from None
    return replace(product, currency=currency)


def _image_ref(line: int, product_id: str, value: Any, base: Path) -> ImageRef:
    s = _text(value)
    if s is None:
        raise RowError("missing image")
    low = s.lower()
    if low.startswith(("http://", "https://")):
        return ImageRef(line, product_id, s, url=s)
    if re.match(r"^[a-z][a-z0-9+.-]*://", low):
        raise RowError(f"image {s!r}: only local paths and http(s) URLs are supported")
    p = Path(s).expanduser()
    if not p.is_absolute():
        p = base / p
    return ImageRef(line, product_id, s, path=p)


def _csv_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError("the manifest is empty (no header row)") from None
    except csv.Error as exc:
        raise ManifestError(f"the manifest's header row is not valid CSV: {exc}") from None
    names = [h.strip() for h in header]
    lowered = [n.lower() for n in names]
    missing = [c for c in ("product_id", "image") if c not in lowered]
    if missing:
        raise ManifestError(
            f"the manifest's header has no {' and no '.join(missing)} column "
            f"(found: {', '.join(names) or 'nothing'})"
        )
    line = reader.line_num + 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield line, {"__error__": f"not valid CSV: {exc}"}
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if not values or all(not v.strip() for v in values):
            continue
        if len(values) > len(names):
            yield start, {"__error__": f"{len(values)} fields but the header has {len(names)}"}
            continue
        yield start, dict(zip(names, values, strict=False))


def _jsonl_rows(text: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            yield n, {"__error__": f"not valid JSON: {exc.msg}"}
            continue
        except RecursionError:  # [[[[...]]]] deeper than the decoder's stack
            yield n, {"__error__": "not valid JSON: nested too deeply"}
            continue
        if not isinstance(obj, dict):
            yield n, {"__error__": "not a JSON object"}
            continue
        yield n, obj


def _column(name: str) -> str:
    """Known columns match case-insensitively; attribute names keep their case."""
    n = str(name).strip()
    return n.lower() if n.lower() in KNOWN_COLUMNS else n


def _is_jsonl(path: Path, text: str) -> bool:
    ext = path.suffix.lower()
    if ext in (".jsonl", ".ndjson"):
        return True
    if ext == ".csv":
        return False
    return text.lstrip().startswith("{")


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest; bad rows become rejects, unreadable files ``ManifestError``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ManifestError(f"manifest {path} does not exist") from None
    except IsADirectoryError:
        raise ManifestError(f"manifest {path} is a directory, not a file") from None
    except OSError as exc:
        raise ManifestError(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"manifest {path} is not UTF-8 (bad byte at offset {exc.start}); save it as UTF-8"
        ) from None
    base = path.resolve().parent
    rows = _jsonl_rows(text) if _is_jsonl(path, text) else _csv_rows(text)
    m = Manifest(path=path)
    seen_images: set[tuple[str, str]] = set()
    for line, row in rows:
        m.rows += 1
        if "__error__" in row:
            m.reject(line, None, str(row["__error__"]))
            continue
        row = {_column(k): v for k, v in row.items() if k is not None}
        pid_raw = _text(row.get("product_id"))
        pid = pid_raw if pid_raw is not None and PRODUCT_ID_RE.match(pid_raw) else None
        try:
            product = product_from_mapping(row)
            ref = _image_ref(line, product.product_id, row.get("image"), base)
        except RowError as exc:
            m.reject(line, pid, str(exc))
            continue
        m.products.setdefault(product.product_id, product)  # first row wins
        key = (product.product_id, str(ref.path or ref.url))
        if key in seen_images:
            continue
        seen_images.add(key)
        m.images.append(ref)
    return m


REJECT_FIELDS = ("line", "product_id", "reason")


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    """Write rejects as CSV (``.csv``) or JSON Lines (anything else)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        with open(path, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(REJECT_FIELDS)
            for r in rejects:
                w.writerow((r.line, r.product_id or "", r.reason))
    else:
        with open(path, "w", encoding="utf-8") as f:
            for r in rejects:
                f.write(
                    json.dumps({"line": r.line, "product_id": r.product_id, "reason": r.reason})
                )
                f.write("\n")
