"""The ingest step every catalog photo goes through, written once.

source -> size limit -> sha256 -> decode -> stored photo -> prepared tensor, or
the reason it stops there (the row's reject message). The local pipeline runs
the whole step on its threads (:class:`Ingest`); the Ray engine reads on the
driver with the same :class:`Ingest` and decodes on its workers with the same
functions, so both engines reject the same rows in the same words. A photo a
client uploads (:func:`ingest_upload`) goes through it too, raising instead
of rejecting.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from shoplens.errors import ShoplensError, TooLarge
from shoplens.files.atomic import write_atomic
from shoplens.indexer.catalog.photos import PHOTO_MAX_SIDE, photo_path
from shoplens.models.decode import decode_image, encode_jpeg

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.engines.base import Fetch
    from shoplens.indexer.sources.manifest import ImageRef
    from shoplens.models.base import FloatArray, ImageEmbedder

log = logging.getLogger(__name__)

REMOTE_UNSUPPORTED = "remote images not supported yet"

# (path, size, mtime_ns, sha256): a source-stat cache row, so that a rerun knows
# an unchanged file by its stat without reading it.
SourceRow = tuple[str, int, int, str]


# -- reject messages (tests and operators read them: change none lightly) -------


def too_large(size: int, limit: int) -> str:
    return f"image is {size} bytes, more than the limit of {limit}"


def cannot_read(source: str, exc: OSError) -> str:
    return f"cannot read image {source}: {exc.strerror or exc}"


def of_image(source: str, reason: str) -> str:
    """A decode failure's reason, prefixed with the row's source (a read failure names it)."""
    return f"image {source}: {reason}"


def worker_reason(source: str, reason: str) -> str:
    """A reason a worker gave for bytes it was sent, as the reject of the row ``source``.

    The worker knows no row: its read failures name the file already, its
    decode failures get the row's source as the local pipeline words them.
    """
    return reason if reason.startswith("cannot read image ") else of_image(source, reason)


def unprocessable(exc: Exception) -> str:
    """The reason for an unexpected error: one odd image must not stop a run."""
    return f"cannot be processed ({type(exc).__name__})"


# -- what reading a reference gives --------------------------------------------


@dataclass(frozen=True)
class Unchanged:
    """Content already embedded with its photo stored: nothing to do."""

    sha256: str
    source_row: SourceRow | None


@dataclass(frozen=True)
class Rejected:
    reason: str


@dataclass(frozen=True)
class Read:
    """Bytes within the limit, not embedded yet (or their photo is missing)."""

    data: bytes
    sha256: str
    source_row: SourceRow | None  # for a local file


@dataclass(frozen=True)
class LocalFile:
    """A local file that passed the checks, not read yet (its stat is not cached)."""

    path: Path
    size: int
    mtime_ns: int

    @property
    def key(self) -> str:
        return str(self.path)


@dataclass(frozen=True)
class Prepared:
    """Decoded, photo stored, network input ready: waiting to be embedded."""

    sha256: str
    array: FloatArray
    source_row: SourceRow | None


Outcome = Prepared | Unchanged | Rejected


# -- the steps as functions, for workers that have no Ingest --------------------


def read_file(path: Path, source: str) -> bytes | Rejected:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        return Rejected(cannot_read(source, exc))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes, *, max_pixels: int, draft_size: int | None) -> Image.Image:
    """The decoded photo; raises the ``ShoplensError`` whose message is the reason."""
    return decode_image(data, max_pixels=max_pixels, draft_size=draft_size)


def photo_jpeg(image: Image.Image, max_side: int = PHOTO_MAX_SIDE) -> bytes:
    """The stored catalog photo the service shows, re-encoded from the decoded image."""
    return encode_jpeg(image, max_side=max_side)


def store_photo(data_dir: Path, sha: str, photo: Image.Image | bytes, *, fsync: bool) -> None:
    """Store the photo of these bytes unless it is there (content addressed: same bytes).

    ``photo`` is the decoded image, encoded only when the photo is missing, or
    its JPEG already encoded (on a Ray worker).
    """
    target = photo_path(data_dir, sha)
    if not target.is_file():
        jpeg = photo if isinstance(photo, bytes) else photo_jpeg(photo)
        write_atomic(target, jpeg, fsync=fsync)


# -- one run's ingest -----------------------------------------------------------


class Ingest:
    """The ingest step for one run's references (thread-safe: run it on workers).

    ``embedded`` is the run's set of content hashes embedded for the model; the
    caller adds to it as batches commit.
    """

    def __init__(
        self,
        settings: Settings,
        store: CatalogStore,
        embedder: ImageEmbedder,
        embedded: set[str],
        fetch: Fetch | None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.embedded = embedded
        self.fetch = fetch
        # JPEGs are decoded at the smallest DCT scale still above the model's input.
        self.draft = int(embedder.preprocess_config.resize)

    def done(self, sha: str) -> bool:
        return sha in self.embedded and photo_path(self.settings.data_dir, sha).is_file()

    def locate(self, ref: ImageRef) -> Read | LocalFile | Unchanged | Rejected:
        """A URL fetched and hashed; a local file checked by its stat, not read."""
        limit = self.settings.max_image_bytes
        if ref.url is not None:
            if self.fetch is None:
                return Rejected(REMOTE_UNSUPPORTED)
            try:
                data = self.fetch(ref.url)
            except (ShoplensError, OSError) as exc:
                return Rejected(f"cannot fetch {ref.url}: {getattr(exc, 'message', exc)}")
            if len(data) > limit:
                return Rejected(too_large(len(data), limit))
            return self._unless_done(data, sha256_of(data), None)
        if ref.path is None:
            return Rejected(f"image {ref.source} is neither a file nor a URL")
        try:
            st = os.stat(ref.path)
        except FileNotFoundError:
            return Rejected(f"image file not found: {ref.source}")
        except OSError as exc:
            return Rejected(cannot_read(ref.source, exc))
        if not stat.S_ISREG(st.st_mode):
            return Rejected(f"image {ref.source} is not a file")
        if st.st_size > limit:
            return Rejected(too_large(st.st_size, limit))
        cached = self.store.cached_sha(str(ref.path), st.st_size, st.st_mtime_ns)
        if cached is not None and self.done(cached):
            return Unchanged(cached, None)
        return LocalFile(ref.path, st.st_size, st.st_mtime_ns)

    def load(self, file: LocalFile, source: str) -> Read | Unchanged | Rejected:
        """Read and hash a located file; its source row goes with what comes back."""
        data = read_file(file.path, source)
        if isinstance(data, Rejected):
            return data
        sha = sha256_of(data)
        return self._unless_done(data, sha, (file.key, file.size, file.mtime_ns, sha))

    def read(self, ref: ImageRef) -> Read | Unchanged | Rejected:
        got = self.locate(ref)
        return self.load(got, ref.source) if isinstance(got, LocalFile) else got

    def _unless_done(self, data: bytes, sha: str, row: SourceRow | None) -> Read | Unchanged:
        return Unchanged(sha, row) if self.done(sha) else Read(data, sha, row)

    def __call__(self, ref: ImageRef) -> Outcome:
        """The whole step for one reference."""
        try:
            return self._prepare(ref)
        except MemoryError:
            raise
        except Exception as exc:  # one odd image must not stop the run
            log.warning("image %s (line %d) failed: %r", ref.source, ref.line, exc)
            return Rejected(of_image(ref.source, unprocessable(exc)))

    def _prepare(self, ref: ImageRef) -> Outcome:
        got = self.read(ref)
        if not isinstance(got, Read):
            return got
        try:
            image = decode(
                got.data, max_pixels=self.settings.max_image_pixels, draft_size=self.draft
            )
        except ShoplensError as exc:
            return Rejected(of_image(ref.source, exc.message))
        store_photo(self.settings.data_dir, got.sha256, image, fsync=False)
        if got.sha256 in self.embedded:  # only its photo was missing
            return Unchanged(got.sha256, got.source_row)
        return Prepared(got.sha256, self.embedder.prepare(image), got.source_row)


# -- an uploaded photo ------------------------------------------------------------


def ingest_upload(
    settings: Settings, data: bytes, i: int, embedder: ImageEmbedder
) -> tuple[str, FloatArray]:
    """The ingest step for the ``i``-th (1-based) photo of a product upload.

    Raises instead of rejecting, naming the photo: ``TooLarge`` past
    ``max_image_bytes``, the decoder's ``ShoplensError`` (same class) for bytes
    that are not a usable image. Stores the photo (synced: the upload is
    acknowledged once it returns) unless it is there, and returns the sha256
    of the bytes and the prepared network input, not embedded yet.
    """
    limit = settings.max_image_bytes
    if len(data) > limit:
        raise TooLarge(f"image {i} is {len(data)} bytes; the limit is {limit}")
    sha = sha256_of(data)
    try:
        # Full decode, no JPEG draft: uploads have always been embedded from it.
        image = decode(data, max_pixels=settings.max_image_pixels, draft_size=None)
    except ShoplensError as exc:
        raise type(exc)(f"image {i}: {exc.message}") from exc
    store_photo(settings.data_dir, sha, image, fsync=True)
    return sha, embedder.prepare(image)
