"""What operators run: re-index runs from a manifest (``build``), admin jobs
(``jobs`` runs them, ``job_store`` keeps their table), garbage collection
(``gc``) and the ``shoplens`` indexer commands.

May import every other room of the indexer.
"""
