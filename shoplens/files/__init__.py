"""File helpers every part shares: atomic writes, directory fsync, sha256 of a
file, and the size-bounded least-recently-used directory cache (``disk_lru``).

Imports nothing of Shoplens.
"""
