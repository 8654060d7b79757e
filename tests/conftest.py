"""Test harness: one real PostgreSQL per session, a fresh migrated database per test module.

The server is a throwaway embedded PostgreSQL, or the one ``CASDB_TEST_DATABASE_URL`` names
(its user needs CREATEDB: each module gets its own database, cloned from a migrated template).
Tests roll back what they write; Hypothesis bodies use ``rolled_back`` per example.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy
from hypothesis import HealthCheck, settings
from sqlalchemy import URL, Connection, Engine

from casdb import migrate
from casdb.config import CONNECTION_VARIABLES
from casdb.local import temporary_server

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
_names = itertools.count()


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DB_* variable from the caller's shell, and never the user's own local server."""
    for name in CONNECTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)

    def refuse() -> None:
        raise AssertionError("a test reached for the user's local default server")

    monkeypatch.setattr("casdb.engine.local_default_config", refuse)


@pytest.fixture(scope="session")
def server_url() -> Iterator[URL]:
    """URL of a maintenance database on the test server (we create databases beside it)."""
    given = os.environ.get("CASDB_TEST_DATABASE_URL")
    if given:
        yield sqlalchemy.make_url(given).set(drivername="postgresql+pg8000")
        return
    with temporary_server() as server:
        yield server.url(database="postgres")


def _admin_execute(server_url: URL, statement: str) -> None:
    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def make_database(server_url: URL) -> Iterator[Callable[..., URL]]:
    """Factory: create an empty (or templated) database, return its URL; dropped at the end."""
    created: list[str] = []

    def make(template: str | None = None) -> URL:
        name = f"casdb_test_{os.getpid()}_{next(_names)}"
        suffix = f" TEMPLATE {template}" if template else ""
        _admin_execute(server_url, f"CREATE DATABASE {name}{suffix}")
        created.append(name)
        return server_url.set(database=name)

    yield make
    for name in created:
        _admin_execute(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def template_database(make_database: Callable[..., URL]) -> str:
    """A database migrated to head once; modules clone it (fast) instead of migrating."""
    url = make_database()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        migrate.upgrade(conn, "head")
    engine.dispose()
    assert url.database is not None
    return url.database


@pytest.fixture(scope="module")
def engine(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    """An engine on this module's own database at migration head."""
    eng = sqlalchemy.create_engine(make_database(template=template_database), pool_size=10)
    yield eng
    eng.dispose()


@contextlib.contextmanager
def rolled_back(engine: Engine) -> Iterator[Connection]:
    """A connection inside a transaction that is rolled back at the end."""
    with engine.connect() as conn:
        conn.begin()
        try:
            yield conn
        finally:
            conn.rollback()


@pytest.fixture
def conn(engine: Engine) -> Iterator[Connection]:
    """A connection whose writes are rolled back after the test."""
    with rolled_back(engine) as connection:
        yield connection


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
