"""The vector index: FAISS exact or IVF-PQ search chosen by size (``plan``), the
vectors kept in RAM or memory-mapped (``rows``) and its checksummed files
(``files``); ``index.VectorIndex`` is what the rest of Shoplens uses.

May import ``shoplens.errors`` and ``shoplens.files`` only.
"""
