"""What searches read: snapshots on disk (build, publish by pointer switch, load)
and the live view of the catalog (published snapshot + later edits).

May import ``catalog``, ``vectors``, ``engines`` and ``shoplens.models``.
"""
