"""casdb's own test harness, on top of its pytest plugin (casdb.testing.plugin).

The plugin gives the real PostgreSQL: a throwaway embedded server, or the one
``CASDB_TEST_DATABASE_URL`` names (its user needs CREATEDB); a template migrated once per
session; a clone per test module; a rolled-back connection per test. This file adds what is
casdb's own: Hypothesis profiles, an environment without DB_* variables, the live-schema
fixture, and the fixture names the test modules use (thin aliases of the plugin's).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import HealthCheck, settings
from sqlalchemy import URL, Connection, Engine

from casdb.config import CONNECTION_VARIABLES
from casdb.testing import TemporaryDatabases, rolled_back

# Installed (pip install '.[test]'), the entry point has loaded the plugin under this same
# name, so pytest skips this; from a bare checkout this loads it.
pytest_plugins = ["casdb.testing.plugin"]

__all__ = ["FIXTURES", "execute_sql", "load_original_schema", "rolled_back"]

settings.register_profile(
    "ci",
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DB_* variable from the caller's shell, and never the user's own local server."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def refuse() -> None:
        raise AssertionError("a test reached for the user's local default server")

    monkeypatch.setattr("casdb.engine.local_default_config", refuse)


# -- the names the test modules use, over the plugin's fixtures ----------------------------


@pytest.fixture(scope="session")
def server_url(casdb_database_url: URL) -> URL:
    """URL of a maintenance database on the test server (the plugin's casdb_database_url)."""
    return casdb_database_url


@pytest.fixture(scope="session")
def make_database(casdb_databases: TemporaryDatabases) -> Callable[..., URL]:
    """Factory: ``make_database(template=None)`` creates an empty (or copied) database."""
    return casdb_databases.create


@pytest.fixture(scope="session")
def template_database(casdb_databases: TemporaryDatabases) -> str:
    """Name of the database migrated to head once per session, which clones copy."""
    return casdb_databases.template


@pytest.fixture(scope="module")
def engine(casdb_engine: Engine) -> Engine:
    """An engine on this module's own database at migration head (casdb_engine)."""
    return casdb_engine


@pytest.fixture
def conn(casdb_connection: Connection) -> Connection:
    """A connection whose writes are rolled back after the test (casdb_connection)."""
    return casdb_connection


# -- helpers -------------------------------------------------------------------------------


def execute_sql(url: URL | str, *statements: str) -> None:
    """Run raw SQL statements on the database at ``url`` and commit (test setup only)."""
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def load_original_schema(url: URL) -> None:
    """Load the live CAS schema fixture (pg_dump output) into the empty database at ``url``."""
    sql = (FIXTURES / "original_cas_schema.sql").read_text()
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.begin() as conn:
            # A pg_dump script is many statements: send it with the simple query protocol.
            conn.connection.driver_connection.execute_simple(sql)  # type: ignore[union-attr]
    finally:
        engine.dispose()
