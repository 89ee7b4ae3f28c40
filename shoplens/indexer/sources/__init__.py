"""Where catalog rows and photos come from: CSV/JSONL manifests with line-numbered
rejects, and the remote photo fetcher with its read-ahead hook and download cache.

May import ``shoplens.files``, ``shoplens.errors``, ``shoplens.ids``,
``shoplens.models.decode`` and ``shoplens.indexer.catalog.types``; nothing else
of the indexer.
"""
