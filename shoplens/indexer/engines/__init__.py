"""Turning photos into stored vectors: the ingest step every photo goes through
(source -> sha256 -> decode -> stored photo -> prepared tensor, or a reject
reason), the local threaded pipeline and the Ray engine built on it.

May import ``sources``, ``catalog``, ``shoplens.files`` and ``shoplens.models``.
"""
