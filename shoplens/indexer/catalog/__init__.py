"""The catalog metadata store on SQLite; :class:`store.CatalogStore` is its one
interface, composed by delegation from one module per responsibility:

- ``types``: the plain records passed in and out (products, images, filters, hits).
- ``photos``: where a catalog photo is stored and its public image id.
- ``schema`` and ``connection``: the tables with their migrations, and the one
  shared connection with its lock, read views and write transactions.
- ``rows`` and ``queries``: writing and reading product and image rows with
  their change sequence.
- ``embeddings``: the embedding cache by (model, sha256) and the source-stat cache.
- ``plan``: the plan/commit of a re-index run.
- ``text``: the FTS5 word-search index of product text, kept by triggers.
- ``collect``: what garbage collection asks of the catalog.

May import ``shoplens.db``, ``shoplens.files`` and ``shoplens.errors`` only.
"""
