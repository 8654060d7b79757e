"""Alembic environment: the URL comes from casdb's configuration, the metadata from casdb.tables.

``config.attributes["connection"]`` may hold an Engine or a Connection (casdb's
``casdb.migrate`` and pytest-alembic put one there); otherwise an engine is built from the
environment like any casdb engine.

Lock discipline (casdb.migrate.MigrationSettings): every migration statement runs under a
``lock_timeout`` and without the service's ``statement_timeout``. On a connection of our own
(an Engine, or a Connection outside a transaction) each revision gets its own transaction and
the revisions' steps run as short autocommit statements; a run that hits the lock timeout
(or a deadlock) is retried with backoff, resuming where it stopped, since every step is
idempotent. On a Connection inside the caller's transaction everything runs there, once.

casdb's revision lives in ``casdb.alembic_version``; a database that only has the original
history's ``public.alembic_version`` at the baseline (a live CAS database) is bootstrapped
from it.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import random
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy
from alembic import context
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from casdb import migrate
from casdb.config import DRIVER
from casdb.engine import create_engine, resolve_config
from casdb.tables import metadata

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

log = logging.getLogger("casdb")
target_metadata = metadata
RETRYABLE = {"55P03", "40P01"}  # lock_not_available (lock_timeout), deadlock_detected


def _configure(**kwargs: Any) -> None:
    context.configure(target_metadata=target_metadata, **migrate.context_options(), **kwargs)


def run_migrations_offline() -> None:
    """Emit SQL for review instead of running it: needs a dialect, not a server."""
    url = config.get_main_option("sqlalchemy.url") or sqlalchemy.URL.create(DRIVER)
    settings = migrate.migration_settings()
    _configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        transaction_per_migration=True,
        casdb_online=True,
        casdb_lock_timeout_ms=settings.lock_timeout_ms,
    )
    for statement in migrate.settings_sql(settings):
        context.execute(statement)
    if context.get_starting_revision_argument() == migrate.BASELINE_REVISION:
        # A live CAS database has only public.alembic_version: start casdb's from it.
        for statement in migrate.START_VERSION_TABLE_AT_BASELINE:
            context.execute(statement)
    else:
        context.execute(migrate.START_VERSION_TABLE_AT_BASELINE[0])
    with context.begin_transaction():
        context.run_migrations()


def _bootstrap(connection: Connection) -> None:
    """Create casdb's version table's schema; seed the table from a live CAS database's."""
    connection.execute(text(migrate.START_VERSION_TABLE_AT_BASELINE[0]))
    if migrate.has_version_table(connection):
        return
    legacy = tuple(MigrationContext.configure(connection).get_current_heads())
    if not legacy:
        return
    if legacy != (migrate.BASELINE_REVISION,):
        raise CommandError(
            f"{migrate.LEGACY_VERSION_TABLE} holds {', '.join(legacy)}, a revision of the "
            f"original CAS history before its head {migrate.BASELINE_REVISION}, casdb's "
            "baseline: upgrade it to that head with the CAS history first"
        )
    for statement in migrate.START_VERSION_TABLE_AT_BASELINE[1:]:
        connection.execute(text(statement))


@contextlib.contextmanager
def _session_settings(
    connection: Connection, settings: migrate.MigrationSettings, *, local: bool
) -> Iterator[None]:
    """Put the migration settings in force; restore the session's own afterwards."""
    names = ("lock_timeout", "statement_timeout")
    saved = {name: connection.execute(text(f"SHOW {name}")).scalar_one() for name in names}
    for statement in migrate.settings_sql(settings):
        connection.execute(text(statement.replace("SET ", "SET LOCAL ", 1) if local else statement))
    try:
        yield
    finally:
        if not connection.invalidated and not (local and not connection.in_transaction()):
            with contextlib.suppress(DBAPIError):
                for name, value in saved.items():
                    connection.execute(
                        text("SELECT set_config(:name, :value, :local)"),
                        {"name": name, "value": value, "local": local},
                    )
                if not local and connection.in_transaction():
                    connection.commit()


def _sqlstate(error: DBAPIError) -> str | None:
    first = error.orig.args[0] if error.orig is not None and error.orig.args else None
    return str(first.get("C")) if isinstance(first, dict) else None


def _run_in_callers_transaction(
    connection: Connection, settings: migrate.MigrationSettings
) -> None:
    with _session_settings(connection, settings, local=True):
        _bootstrap(connection)
        _configure(connection=connection, casdb_online=False)
        with context.begin_transaction():
            context.run_migrations()


def _run_online(connection: Connection, settings: migrate.MigrationSettings) -> None:
    with _session_settings(connection, settings, local=False):
        _bootstrap(connection)
        connection.commit()  # alembic must not take our queries for the caller's transaction
        _configure(
            connection=connection,
            transaction_per_migration=True,
            casdb_online=True,
            casdb_lock_timeout_ms=settings.lock_timeout_ms,
        )
        for attempt in range(settings.lock_retries + 1):
            try:
                with context.begin_transaction():
                    context.run_migrations()
                return
            except DBAPIError as error:
                if _sqlstate(error) not in RETRYABLE or attempt == settings.lock_retries:
                    raise
                if connection.in_transaction():
                    connection.rollback()
                delay = settings.retry_backoff_s * 2**attempt
                delay += random.uniform(0, settings.retry_backoff_s)  # noqa: S311 - jitter
                log.warning(
                    "migration step waited %d ms for a lock (another transaction holds the "
                    "table); retrying in %.1f s (%d of %d), resuming where it stopped",
                    settings.lock_timeout_ms,
                    delay,
                    attempt + 1,
                    settings.lock_retries,
                )
                time.sleep(delay)


def _run(connection: Connection) -> None:
    settings = migrate.migration_settings()  # a bad value is refused before any SQL
    if connection.in_transaction():
        _run_in_callers_transaction(connection, settings)
    else:
        _run_online(connection, settings)


def run_migrations_online() -> None:
    bind = config.attributes.get("connection")
    if isinstance(bind, Connection):
        _run(bind)
        return
    if bind is not None and not isinstance(bind, Engine) and hasattr(bind, "connect"):
        # An engine-like wrapper (pytest-alembic's) handing out a connection of its own.
        with bind.connect() as connection:
            _run(connection)
        return
    engine = bind
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        engine = sqlalchemy.create_engine(url) if url else create_engine(resolve_config())
    try:
        with engine.connect() as connection:
            _run(connection)
    finally:
        if bind is None:
            engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
