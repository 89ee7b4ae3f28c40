"""The catalog metadata store on SQLite: product and image rows with their change
sequence, the embedding cache by (model, sha256), the source-stat cache, the
plan/commit of a re-index run, orphan collection and run history.

May import ``shoplens.db``, ``shoplens.files`` and ``shoplens.errors`` only.
"""
