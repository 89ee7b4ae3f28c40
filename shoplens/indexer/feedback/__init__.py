"""Learning from shoppers: the search log, feedback events and kept shopper photos.

Everything lives in its own SQLite file, ``data_dir/feedback.db``, and its own
folder, ``data_dir/feedback/``, never in the catalog database:

- the search log is written once per search: keeping it out of ``catalog.db``
  keeps it off the catalog writer's lock and out of the catalog's change
  sequence (a search is not a catalog edit);
- shopper photos are personal data with their own retention: deleting every
  trace of them is deleting one file and one folder, and a backup of the
  catalog never carries them by accident.

``store`` owns the tables, ``photos`` the held and kept photo files (re-encoded,
metadata stripped, bounded), ``views`` the cached crop views a kept photo
teaches the adaptation, ``guards`` the poisoning checks. Used by the
service (recording, feedback, review) and by ``indexer.ops.learn``.

May import ``shoplens.config``, ``shoplens.db``, ``shoplens.errors``,
``shoplens.files``, ``shoplens.ids`` and ``shoplens.models``.
"""
