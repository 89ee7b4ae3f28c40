"""The vector index: FAISS exact or IVF-PQ search chosen by size (``plan``), built
and trained (``build``), the vectors kept in RAM or memory-mapped (``rows``),
searched with per-thread kernels (``kernels``), saved and opened again
(``persist``) as checksummed files (``files``); ``index.VectorIndex`` is what the
rest of Shoplens uses.

May import ``shoplens.errors`` and ``shoplens.files`` only.
"""
