"""What searches read, and the one way a single edit reaches them.

- ``snapshot``: snapshots on disk (build from plain ``CatalogVectors``,
  publish by an atomic pointer switch, verify and load).
- ``adaptation``: which catalog adaptation a snapshot is built with.
- ``view``: the immutable ``CatalogView`` a search reads (snapshot + overlay
  of later edits + filter columns) and its incremental refresh.
- ``query``: searching a view (filters, widening, one hit per product).
- ``rerank``: geometric re-ranking of a studio snapshot's short list
  (RootSIFT + RANSAC, OpenCV), the catalog photos' local features cache.
- ``query_domain``: the running mean of a shop's photo searches that studio
  photo searches are centred on (shared by processes through one file).
- ``live``: ``LiveIndex``, the read model (search, similar, product, image
  paths, reload) holding the current view.
- ``writer``: ``CatalogWriter``, product upserts and deletes: ingest, commit
  to the store, then ``LiveIndex.apply_edit``.

May import ``catalog``, ``vectors``, ``engines``, ``sources`` (product
validation) and ``shoplens.models``.
"""
