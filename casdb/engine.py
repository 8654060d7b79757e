"""The engine factory. casdb creates no engine at import time; callers own theirs."""

from __future__ import annotations

from typing import Any

import attrs
import sqlalchemy
from sqlalchemy import Engine

from casdb.config import DatabaseConfig, config_from_env
from casdb.local import announce, default_server


def local_default_config() -> DatabaseConfig:
    """Start (or reuse) the per-user local PostgreSQL and return its configuration.

    Says so on stderr. Raises ConfigurationError when the server cannot be started.
    """
    server = default_server()
    url = server.start()
    announce(
        "no DB_* variables set: using the local embedded PostgreSQL at "
        f"{url.render_as_string(hide_password=True)} (data in {server.data_dir})"
    )
    return DatabaseConfig(url=url, mode="local")


def resolve_config(config: DatabaseConfig | None = None) -> DatabaseConfig:
    """Return ``config``, else the environment's configuration, else the local default.

    Raises ConfigurationError for a half-set or malformed environment.
    """
    if config is not None:
        return config
    return config_from_env() or local_default_config()


def create_engine(config: DatabaseConfig | None = None, *, echo: bool = False) -> Engine:
    """Return a pooled engine for ``config`` (default: from the environment, see ``config``).

    Bound parameters are hidden from logs and error messages so that secrets never leak.
    Raises ConfigurationError for a half-set or malformed environment.
    """
    config = resolve_config(config)
    return sqlalchemy.create_engine(
        config.url,
        connect_args=config.connect_args(),
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        pool_recycle=config.pool_recycle,
        pool_pre_ping=config.pool_pre_ping,
        hide_parameters=True,
        echo=echo,
    )


def config_for_url(url: str | sqlalchemy.URL, **settings: Any) -> DatabaseConfig:
    """Return a configuration for an explicit URL, with optional pool/timeout settings."""
    return attrs.evolve(DatabaseConfig(url=sqlalchemy.make_url(url)), **settings)
