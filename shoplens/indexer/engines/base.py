"""What every engine is: one signature and one result, so a run can use any of them.

An engine turns a manifest's image references into embeddings committed to the
catalog store (content already embedded for the model is skipped) and says
what became of each reference. The local threaded pipeline and the Ray engine
both have this shape; ``table`` picks one by ``Settings.index_engine``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.sources.manifest import ImageRef, Reject
    from shoplens.models.base import ImageEmbedder

# Plug-in point for remote images: URL -> bytes, raising ShoplensError (or
# OSError) with a reason that becomes the row's reject message.
Fetch = Callable[[str], bytes]

# ``on_progress(done, total)``: rows settled so far, of all rows (an admin job's progress).
OnProgress = Callable[[int, int], object]


@dataclass
class EmbedResult:
    """What an engine did with each image reference."""

    shas: dict[int, str] = field(default_factory=dict)  # ref position -> sha256
    rejects: list[Reject] = field(default_factory=list)
    indexed: int = 0
    unchanged: int = 0
    batches: int = 0
    seconds: float = 0.0


class Engine(Protocol):
    """Embed every referenced image whose content is not embedded yet for this model.

    ``fetch`` reads http(s) references (without it they are rejected);
    ``progress`` shows a bar when stderr is a TTY; ``on_progress`` is called as
    rows settle. A bad reference becomes a reject with its line, never an error.
    """

    def __call__(
        self,
        settings: Settings,
        store: CatalogStore,
        embedder: ImageEmbedder,
        refs: Sequence[ImageRef],
        *,
        fetch: Fetch | None = None,
        progress: bool = False,
        on_progress: OnProgress | None = None,
    ) -> EmbedResult: ...
