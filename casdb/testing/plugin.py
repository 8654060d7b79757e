"""casdb's pytest plugin: a real, migrated, throwaway PostgreSQL for every test.

Installed with ``pip install 'casdb[test]'`` it is active in every pytest run (entry point
``pytest11``: ``casdb.testing.plugin``); without the entry point, load it with
``-p casdb.testing.plugin`` or ``pytest_plugins = ["casdb.testing.plugin"]`` in the top
conftest.py. Disable it with ``-p no:casdb.testing.plugin``.

The server is a throwaway embedded PostgreSQL started once per session, or the one
``CASDB_TEST_DATABASE_URL`` names (its user needs CREATEDB). A template database is migrated
once; each test module gets its own clone of it; each test's connection is rolled back.
The plugin needs neither Hypothesis nor anything beyond casdb and pytest.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import URL, Engine

from casdb.config import CONNECTION_VARIABLES
from casdb.testing.connections import RollbackConnection, rolled_back
from casdb.testing.databases import (
    TemporaryDatabases,
    create_test_engine,
    server_for_tests,
)
from casdb.testing.factories import Factory


@pytest.fixture(scope="session")
def casdb_database_url() -> Iterator[URL]:
    """URL of a database on the test server (a throwaway one, or CASDB_TEST_DATABASE_URL).

    ``CASDB_TEST_DATABASE_URL`` when set (its user needs CREATEDB), else the ``postgres``
    database of a throwaway embedded PostgreSQL started for this session. Not migrated: use
    ``casdb_engine`` (or ``casdb_databases``) for a database with casdb's schema.
    """
    with server_for_tests() as url:
        yield url


@pytest.fixture(scope="session")
def casdb_databases(casdb_database_url: URL) -> Iterator[TemporaryDatabases]:
    """Makes databases on the test server (``.migrated()``); dropped at the end of the session.

    ``casdb_databases.migrated()`` returns the URL of a new database at casdb's migration head
    (a clone of a template migrated once per session); ``.create()`` an empty one;
    ``.create(template=name)`` a copy of ``name``.
    """
    databases = TemporaryDatabases(casdb_database_url)
    try:
        yield databases
    finally:
        databases.drop_all()


@pytest.fixture(scope="module")
def casdb_engine(casdb_databases: TemporaryDatabases) -> Iterator[Engine]:
    """An engine on this test module's own database, migrated to casdb's head.

    Work committed through it (``with casdb_engine.begin() as conn: ...``) stays for the rest
    of the module: prefer ``casdb_connection``, or ``casdb.testing.rolled_back(casdb_engine)``
    inside a Hypothesis test.
    """
    url = casdb_databases.migrated()
    engine = create_test_engine(url)
    try:
        yield engine
    finally:
        engine.dispose()
        casdb_databases.drop(url)


@pytest.fixture
def casdb_connection(casdb_engine: Engine) -> Iterator[RollbackConnection]:
    """A connection to the migrated database; everything it does is rolled back afterwards.

    The code under test may commit, roll back and begin on it: those act on a savepoint
    (see casdb.testing.RollbackConnection), so nothing outlives the test. For a Session:
    ``Session(bind=casdb_connection, join_transaction_mode="create_savepoint")``.
    In a Hypothesis test use ``with casdb.testing.rolled_back(casdb_engine) as conn:`` per
    example instead (a function-scoped fixture runs once per test, not per example).
    """
    with rolled_back(casdb_engine) as connection:
        yield connection


@pytest.fixture
def casdb_factory(casdb_connection: RollbackConnection) -> Factory:
    """Factories on ``casdb_connection``: ``.user()``, ``.key()``, ``.model()``, ``.ingest()``.

    Each makes a valid row (and its children: a model's indexes, an ingest's features and
    cells) in one call; keyword arguments override any field. See casdb.testing.factories.
    """
    return Factory(casdb_connection)


@pytest.fixture
def casdb_environment(casdb_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the DB_* environment at this module's migrated database; return its URL.

    For code that builds its own engine (``casdb.create_engine()``): SQLALCHEMY_DATABASE_URI
    is set and the other connection variables unset for the test. Its commits are real:
    they stay in the module's database.
    """
    for name in (*CONNECTION_VARIABLES, *_reader_variables()):
        monkeypatch.delenv(name, raising=False)
    url = casdb_engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("SQLALCHEMY_DATABASE_URI", url)
    return url


def _reader_variables() -> list[str]:
    return [name for name in os.environ if name.startswith(("DB_READ_", "SQLALCHEMY_READ_"))]
