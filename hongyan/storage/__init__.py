"""One async SQL layer for SQLite (embedded default) and PostgreSQL.

The same schema and the same queries run on both engines, behind one small interface
(:class:`hongyan.storage.db.Database`): ``execute``, ``executemany``, ``fetchall``, ``fetchone``,
``fetchval``, ``transaction()``, ``bulk_insert`` (archives' appends; on an SQLite file, in a
writer process: :mod:`hongyan.storage.writer`) and ``close``.

Why the drivers (the stdlib ``sqlite3``, asyncpg) directly rather than SQLAlchemy:

* fewer layers on the hot paths: a login, an offline-message store or a roster push is a few
  primary-key statements; with SQLAlchemy each would pass through an engine, a connection
  wrapper, a result proxy and (async) a greenlet bridge before reaching the driver;
* one placeholder style: every statement is written with ``?``; the PostgreSQL backend rewrites
  it to ``$1, $2…`` once per distinct statement, so there is nothing dialect-specific in the
  modules' queries;
* a tiny API that a module author learns in a minute, and that is easy to review for
  correctness (transactions, locking) because there is so little of it.

Portable DDL uses a handful of placeholders (``{pk}``, ``{blob}``, ``{bigint}``, ``{text}``),
see :func:`hongyan.storage.migrations.render_ddl`. Values are ``str``, ``int``, ``float``,
``bytes`` (BLOB / BYTEA) and ``None``; booleans are stored as INTEGER 0/1 on both engines so that
queries are identical (pass ``True``/``False`` or ``1``/``0``; read back ``1``/``0``).
"""
