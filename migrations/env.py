"""Alembic environment: the URL comes from casdb's configuration, the metadata from casdb.tables.

A caller may hand over an open connection in ``config.attributes["connection"]`` (casdb's CLI
and tests do); otherwise the engine is built from the environment like any casdb engine.
"""

from __future__ import annotations

import logging.config

import sqlalchemy
from alembic import context
from sqlalchemy.engine import Connection

from casdb.config import DRIVER
from casdb.engine import create_engine, resolve_config
from casdb.tables import metadata

config = context.config
if config.config_file_name is not None and not config.attributes.get("skip_logging_config"):
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def _configure(**kwargs: object) -> None:
    context.configure(target_metadata=target_metadata, compare_type=True, **kwargs)


def run_migrations_offline() -> None:
    """Emit SQL for review instead of running it: needs a dialect, not a server."""
    url = config.get_main_option("sqlalchemy.url") or sqlalchemy.URL.create(DRIVER)
    _configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_on(connection)
        return
    url = config.get_main_option("sqlalchemy.url")
    engine = sqlalchemy.create_engine(url) if url else create_engine(resolve_config())
    try:
        with engine.begin() as conn:
            _run_on(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
