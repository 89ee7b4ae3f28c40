"""Turning photos into stored vectors: the ingest step every photo goes through
(source -> sha256 -> decode -> stored photo -> prepared tensor, or a reject
reason), the local threaded pipeline and the Ray engine built on it.

- ``ingest``: that step, once (``Ingest`` for a run's manifest references,
  ``ingest_upload`` for a photo a client uploads, which raises instead).
- ``base``: what an engine is (``Engine``, ``EmbedResult``, ``Fetch``).
- ``local``: the threaded pipeline (``embed_missing``).
- ``ray_engine`` (driver) and ``ray_stages`` (what its workers run): the Ray
  engine (``embed_missing_ray``), Ray imported only when it runs.
- ``table``: the engine a run uses, by ``Settings.index_engine``.

May import ``sources``, ``catalog``, ``shoplens.files`` and ``shoplens.models``.
"""
