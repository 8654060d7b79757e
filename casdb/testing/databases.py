"""Throwaway databases for tests: a server, one migrated template, cheap clones of it.

Cloning (``CREATE DATABASE ... TEMPLATE``) copies files and takes a fraction of a second;
migrating from scratch takes seconds. So a session migrates one template and every module
clones it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import time
from collections.abc import Iterator, Mapping

import sqlalchemy
from sqlalchemy import URL, Engine
from sqlalchemy import exc as sa_exc
from sqlalchemy.pool import NullPool

from casdb import migrate
from casdb.errors import ConfigurationError

TEST_DATABASE_URL_VARIABLE = "CASDB_TEST_DATABASE_URL"
_DRIVER = "postgresql+pg8000"
_OBJECT_IN_USE = "55006"  # the template still has a (closing) session: retry shortly
_CLONE_RETRY_SECONDS = 10.0


def _shown(url: URL) -> str:
    return url.render_as_string(hide_password=True)


def url_from_environment(environ: Mapping[str, str] | None = None) -> URL | None:
    """Return the URL in ``CASDB_TEST_DATABASE_URL`` (pg8000 driver), or None when unset.

    Raises ConfigurationError for a value that is not a database URL.
    """
    raw = (os.environ if environ is None else environ).get(TEST_DATABASE_URL_VARIABLE, "")
    if not raw.strip():
        return None
    try:
        url = sqlalchemy.make_url(raw.strip())
    except sa_exc.ArgumentError:
        raise ConfigurationError(
            f"{TEST_DATABASE_URL_VARIABLE} is not a database URL "
            "(expected postgresql://user:password@host:port/database)"
        ) from None
    if not url.drivername.startswith("postgres"):
        raise ConfigurationError(
            f"{TEST_DATABASE_URL_VARIABLE} must name a PostgreSQL server, got {url.drivername!r}"
        )
    return url.set(drivername=_DRIVER)


@contextlib.contextmanager
def server_for_tests(environ: Mapping[str, str] | None = None) -> Iterator[URL]:
    """Yield the URL of a database on a server where tests may create databases.

    That is ``CASDB_TEST_DATABASE_URL`` when set (its user needs CREATEDB), else the
    ``postgres`` database of a throwaway embedded PostgreSQL, stopped and deleted on exit.
    Raises ConfigurationError when neither is available.
    """
    given = url_from_environment(environ)
    if given is not None:
        yield given
        return
    try:
        from casdb.local import temporary_server
    except ImportError as error:
        raise ConfigurationError(
            f"casdb.testing needs a PostgreSQL: set {TEST_DATABASE_URL_VARIABLE}, or install "
            f"the embedded server with pip install 'casdb[test]' ({error})"
        ) from None
    with temporary_server() as server:
        yield server.url(database="postgres")


def migrate_to_head(url: URL) -> None:
    """Migrate the (empty) database at ``url`` to casdb's head revision.

    The one place the test kit runs casdb's migrations.
    """
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.begin() as connection:
            migrate.upgrade(connection, "head")
    finally:
        engine.dispose()


def create_test_engine(url: URL) -> Engine:
    """Return a pooled engine on a test database (room for a few concurrent connections)."""
    return sqlalchemy.create_engine(url, pool_size=10)


class TemporaryDatabases:
    """Create databases on a test server and drop them all at the end.

    ``create()`` makes an empty database (or a clone of ``template``); ``migrated()`` clones
    the template migrated to head, which the first call creates. Names are unique to this
    object (process id and a random token), so several sessions can share one server.
    """

    __test__ = False

    def __init__(self, server_url: URL, *, prefix: str = "casdb_test") -> None:
        self.server_url = server_url
        self._prefix = f"{prefix}_{os.getpid()}_{secrets.token_hex(3)}"
        self._numbers = itertools.count()
        self._created: list[str] = []
        self._template: str | None = None

    def _execute(self, statement: str, *, what: str) -> None:
        engine = sqlalchemy.create_engine(
            self.server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql(statement)
        except sa_exc.DBAPIError as error:
            fields = error.orig.args[0] if error.orig is not None and error.orig.args else None
            if isinstance(fields, dict):
                code, message = fields.get("C", ""), fields.get("M", "")
            else:
                code, message = "", str(error.orig)
            if code == _OBJECT_IN_USE:
                raise _ObjectInUse(message) from None
            hint = " (the user needs the CREATEDB privilege)" if code == "42501" else ""
            raise ConfigurationError(
                f"casdb.testing could not {what} on {_shown(self.server_url)}: {message}{hint}"
            ) from None
        finally:
            engine.dispose()

    def _quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'  # a PostgreSQL quoted identifier

    def create(self, template: str | None = None) -> URL:
        """Create an empty database, or a copy of the database named ``template``.

        Returns its URL. Raises ConfigurationError when the server refuses.
        """
        name = f"{self._prefix}_{next(self._numbers)}"
        statement = f"CREATE DATABASE {self._quote(name)}"
        if template is not None:
            statement += f" TEMPLATE {self._quote(template)}"
        deadline = time.monotonic() + _CLONE_RETRY_SECONDS
        while True:
            try:
                self._execute(statement, what=f"create database {name}")
                break
            except _ObjectInUse as error:
                # A session of the template is still closing (backends exit asynchronously).
                if time.monotonic() > deadline:
                    raise ConfigurationError(
                        f"casdb.testing could not copy database {template}: {error}"
                    ) from None
                time.sleep(0.05)
        self._created.append(name)
        return self.server_url.set(database=name)

    @property
    def template(self) -> str:
        """Name of the database migrated to head that clones copy (migrated on first use)."""
        if self._template is None:
            url = self.create()
            migrate_to_head(url)
            assert url.database is not None
            self._template = url.database
        return self._template

    def migrated(self) -> URL:
        """Create a database at migration head (a clone of the template); return its URL."""
        return self.create(template=self.template)

    def drop(self, url: URL) -> None:
        """Drop the database at ``url`` (one this object created) now."""
        if url.database in self._created and url.database != self._template:
            self._created.remove(url.database)
            self._execute(
                f"DROP DATABASE IF EXISTS {self._quote(url.database)} WITH (FORCE)",
                what=f"drop database {url.database}",
            )

    def drop_all(self) -> None:
        """Drop every database this object created (connected sessions are terminated)."""
        while self._created:
            name = self._created.pop()
            self._execute(
                f"DROP DATABASE IF EXISTS {self._quote(name)} WITH (FORCE)",
                what=f"drop database {name}",
            )
        self._template = None


class _ObjectInUse(Exception):
    pass
