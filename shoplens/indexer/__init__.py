"""The indexer: from a catalog manifest (or one product edit) to a searchable index.

Rooms, each a sub-package whose docstring says what it owns and may import:

- ``sources``: where photos and product rows come from (manifests, remote
  fetching with its download cache).
- ``engines``: turning photos into stored vectors (the one ingest step, the
  local threaded pipeline, the Ray engine).
- ``catalog``: the metadata store (products, images, embedding cache, runs).
- ``vectors``: the FAISS vector index and its files.
- ``serving``: snapshots on disk and the live, searchable view of the catalog.
- ``feedback``: learning from shoppers (the search log, feedback events,
  kept shopper photos and the poisoning guards, in ``feedback.db``).
- ``ops``: what operators run (re-index and learn runs, admin jobs, garbage
  collection, the CLI commands).

Imports point down this list's dependencies, never up: ``ops`` may use every
room; ``serving`` uses ``catalog``, ``vectors`` and ``engines``; ``engines``
uses ``sources`` and ``catalog``; ``catalog``, ``vectors`` and ``sources``
use only ``shoplens.files``, ``shoplens.db``, ``shoplens.errors``,
``shoplens.ids`` and ``shoplens.models``; ``feedback`` also ``shoplens.config``.
"""
