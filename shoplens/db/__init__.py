"""The metadata database: one SQLite file per store (the embedded default) or one
PostgreSQL database shared by every replica (``SHOPLENS_DATABASE_URL``).

Owns the connection (:class:`Database`), the little SQL dialect translation the
stores need (:mod:`.dialect`), versioned schema migrations (:mod:`.migrations`)
and change notifications between processes (:mod:`.notify`). Stores write their
SQL once, in the subset both engines share, with ``?`` placeholders.

May import nothing from the rest of Shoplens: every store builds on it.
"""

from shoplens.db.database import Conn, Cursor, Database, Row, is_postgres_url

__all__ = ["Conn", "Cursor", "Database", "Row", "is_postgres_url"]
