"""Which engine a run uses: the table of engines by ``Settings.index_engine``.

A run looks its engine up here instead of branching on the setting, so an
engine is added in one place. The Ray engine is imported only when chosen
(Ray is an optional extra; it says how to install it when missing).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING

from shoplens.indexer.engines.base import EmbedResult, Engine, Fetch, OnProgress
from shoplens.indexer.engines.local import embed_missing

if TYPE_CHECKING:
    from shoplens.config import Settings
    from shoplens.indexer.catalog.store import CatalogStore
    from shoplens.indexer.sources.manifest import ImageRef
    from shoplens.models.base import ImageEmbedder


def embed_missing_on_ray(
    settings: Settings,
    store: CatalogStore,
    embedder: ImageEmbedder,
    refs: Sequence[ImageRef],
    *,
    fetch: Fetch | None = None,
    progress: bool = False,
    on_progress: OnProgress | None = None,
) -> EmbedResult:
    """:func:`~shoplens.indexer.engines.ray_engine.embed_missing_ray` on the cluster
    the ``settings.ray_*`` name."""
    from shoplens.indexer.engines.ray_engine import embed_missing_ray

    return embed_missing_ray(
        settings,
        store,
        embedder,
        refs,
        fetch=fetch,
        progress=progress,
        on_progress=on_progress,
        ray_address=settings.ray_address,
        actors=settings.ray_actors,
        threads_per_actor=settings.ray_threads_per_actor,
        paths_on_workers=settings.ray_paths_on_workers,
    )


ENGINES: Mapping[str, Engine] = MappingProxyType(
    {"local": embed_missing, "ray": embed_missing_on_ray}
)


def engine_for(settings: Settings) -> Engine:
    """The engine ``settings.index_engine`` names."""
    return ENGINES[settings.index_engine]
