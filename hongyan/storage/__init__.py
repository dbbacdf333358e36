"""One async SQL layer for SQLite (embedded default) and PostgreSQL.

We use the drivers (the stdlib ``sqlite3``, asyncpg) directly behind one small interface rather
than SQLAlchemy: the queries are few and simple, the same SQL (``?`` placeholders) runs on both
engines, and on the paths that matter (login, offline storage, roster) one layer is cheaper than
three.
"""
