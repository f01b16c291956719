"""Schedule stores: SQLite (default), PostgreSQL, MySQL/MariaDB.

Each driver (aiosqlite, asyncpg, aiomysql) is imported only when its store is built; a
missing one raises ``ImportError`` naming the extra to install.
"""

from __future__ import annotations

from flowrra.exceptions import BackendError
from flowrra.scheduler.backends.base import DEFAULT_TABLE, BaseSchedulerBackend
from flowrra.scheduler.backends.mysql import MySQLSchedulerBackend
from flowrra.scheduler.backends.postgresql import PostgreSQLSchedulerBackend
from flowrra.scheduler.backends.sqlite import DEFAULT_DATABASE, SQLiteSchedulerBackend

__all__ = [
    "BaseSchedulerBackend",
    "MySQLSchedulerBackend",
    "PostgreSQLSchedulerBackend",
    "SQLiteSchedulerBackend",
    "get_scheduler_backend",
    "sqlite_path",
]

_POSTGRES = ("postgresql://", "postgres://", "postgresql+asyncpg://")
_MYSQL = ("mysql://", "mariadb://", "mysql+aiomysql://")


def sqlite_path(url: str) -> str:
    """The database path of a ``sqlite://`` URL.

    ``sqlite:///rel.db`` is relative to the working directory, ``sqlite:////abs/path.db``
    is absolute, ``sqlite:///:memory:`` is an in-memory database.
    """
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError(f"invalid SQLite URL {url!r}: use sqlite:///file.db or sqlite:////abs.db")
    return url[len(prefix) :]


def get_scheduler_backend(
    url: str | None = None, *, table_name: str = DEFAULT_TABLE
) -> BaseSchedulerBackend:
    """A schedule store for ``url``.

    ``None``: SQLite file ``.flowrra_schedule.db`` in the working directory;
    ``sqlite:///…``, ``postgresql://``/``postgres://``, ``mysql://``/``mariadb://``.
    An unknown scheme raises :class:`~flowrra.exceptions.BackendError` naming it.
    """
    if url is None:
        return SQLiteSchedulerBackend(DEFAULT_DATABASE, table_name=table_name)
    if url.startswith("sqlite:"):
        return SQLiteSchedulerBackend(sqlite_path(url), table_name=table_name)
    if url.startswith(_POSTGRES):
        dsn = "postgresql://" + url.split("://", 1)[1]
        return PostgreSQLSchedulerBackend(dsn, table_name=table_name)
    if url.startswith(_MYSQL):
        return MySQLSchedulerBackend(url, table_name=table_name)
    scheme = url.split("://", 1)[0] if "://" in url else url
    raise BackendError(
        f"unknown scheduler database scheme {scheme!r}: use sqlite:///, postgresql:// or mysql://"
    )
