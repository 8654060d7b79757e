"""Database configuration from the DB_* environment variables of the CAS deployments.

Three modes, the first that applies wins:

* ``SQLALCHEMY_DATABASE_URI`` — a full SQLAlchemy URL;
* Cloud SQL: ``DB_USER``, ``DB_PASSWORD``, ``DB_NAME``, ``DB_INSTANCE_UNIX_SOCKET`` — pg8000
  connects to ``<DB_INSTANCE_UNIX_SOCKET>/.s.PGSQL.5432``;
* TCP: ``DB_HOST``, ``DB_USER``, ``DB_PASSWORD``, ``DB_NAME`` and optionally ``DB_PORT``.

With none of the variables set, casdb uses the local embedded PostgreSQL (``casdb.local``).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from typing import Any

import attrs
from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError

from casdb.errors import ConfigurationError

DRIVER = "postgresql+pg8000"
CLOUD_SQL_SOCKET_NAME = ".s.PGSQL.5432"

CONNECTION_VARIABLES = (
    "SQLALCHEMY_DATABASE_URI",
    "DB_HOST",
    "DB_PORT",
    "DB_USER",
    "DB_PASSWORD",
    "DB_NAME",
    "DB_INSTANCE_UNIX_SOCKET",
)
_TCP_REQUIRED = ("DB_HOST", "DB_USER", "DB_PASSWORD", "DB_NAME")
_SOCKET_REQUIRED = ("DB_INSTANCE_UNIX_SOCKET", "DB_USER", "DB_PASSWORD", "DB_NAME")


@attrs.frozen
class DatabaseConfig:
    """Everything needed to build an engine. ``repr`` never shows the password."""

    url: URL = attrs.field(repr=lambda url: url.render_as_string(hide_password=True))
    unix_sock: str | None = None
    # "url" (SQLALCHEMY_DATABASE_URI), "tcp", "unix_socket" or "local" (embedded default).
    mode: str = "url"
    pool_size: int = 5
    max_overflow: int = 10
    pool_timeout: float = 30.0
    pool_recycle: int = 1800
    pool_pre_ping: bool = True
    ssl: bool = False
    ssl_root_cert: str | None = None
    statement_timeout_ms: int | None = None
    lock_timeout_ms: int | None = None

    def connect_args(self) -> dict[str, Any]:
        """Return the keyword arguments for ``pg8000.connect`` beyond those in the URL."""
        args: dict[str, Any] = {}
        if self.unix_sock is not None:
            args["unix_sock"] = self.unix_sock
        if self.ssl:
            # pg8000 without an explicit context verifies nothing: build a verifying one.
            context = ssl.create_default_context(cafile=self.ssl_root_cert)
            args["ssl_context"] = context
        options = []
        if self.statement_timeout_ms is not None:
            options.append(f"-c statement_timeout={self.statement_timeout_ms}")
        if self.lock_timeout_ms is not None:
            options.append(f"-c lock_timeout={self.lock_timeout_ms}")
        if options:
            args["startup_params"] = {"options": " ".join(options)}
        return args


def _int_setting(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must not be negative, got {value}")
    return value


def _bool_setting(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on", "require"):
        return True
    if lowered in ("0", "false", "no", "off", "disable"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _missing(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if env.get(name) is None]


def _half_set_message(present: list[str], missing: list[str], needed: tuple[str, ...]) -> str:
    def verb(names: list[str]) -> str:
        return "is" if len(names) == 1 else "are"

    return (
        f"{', '.join(present)} {verb(present)} set but {', '.join(missing)} {verb(missing)} "
        f"missing: set all of {', '.join(needed)}"
        + (" (DB_PORT optional, default 5432)" if "DB_HOST" in needed else "")
        + ", or unset them all to use the local embedded PostgreSQL"
    )


def connection_variables_set(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the connection variables present in ``environ``."""
    env = os.environ if environ is None else environ
    return [name for name in CONNECTION_VARIABLES if env.get(name) is not None]


def config_from_env(environ: Mapping[str, str] | None = None) -> DatabaseConfig | None:
    """Read the database configuration from ``environ`` (default: ``os.environ``).

    Returns None when no connection variable is set (the local embedded default applies).
    Raises ConfigurationError for a half-set environment, naming the missing variables, and
    for malformed values.
    """
    env = os.environ if environ is None else environ
    present = connection_variables_set(env)
    if not present:
        return None
    tuned = DatabaseConfig(
        url=URL.create(DRIVER),
        pool_size=_int_setting(env, "DB_POOL_SIZE", 5) or 0,
        max_overflow=_int_setting(env, "DB_MAX_OVERFLOW", 10) or 0,
        pool_timeout=float(_int_setting(env, "DB_POOL_TIMEOUT", 30) or 0),
        pool_recycle=_int_setting(env, "DB_POOL_RECYCLE", 1800) or -1,
        pool_pre_ping=_bool_setting(env, "DB_POOL_PRE_PING", True),
        ssl=_bool_setting(env, "DB_SSL", False),
        ssl_root_cert=env.get("DB_SSL_ROOT_CERT") or None,
        statement_timeout_ms=_int_setting(env, "DB_STATEMENT_TIMEOUT_MS", None),
        lock_timeout_ms=_int_setting(env, "DB_LOCK_TIMEOUT_MS", None),
    )
    uri = env.get("SQLALCHEMY_DATABASE_URI")
    if uri is not None:
        try:
            url = make_url(uri)
        except ArgumentError:
            # The message of ArgumentError quotes the URL, password included.
            raise ConfigurationError("SQLALCHEMY_DATABASE_URI is not a valid URL") from None
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername=DRIVER)
        if url.drivername != DRIVER:
            raise ConfigurationError(
                f"SQLALCHEMY_DATABASE_URI must use {DRIVER!r} (casdb runs on pg8000), "
                f"got {url.drivername!r}"
            )
        return attrs.evolve(tuned, url=url, mode="url")

    if env.get("DB_INSTANCE_UNIX_SOCKET") is not None:
        if env.get("DB_HOST") is not None:
            raise ConfigurationError(
                "both DB_HOST and DB_INSTANCE_UNIX_SOCKET are set: unset one of them "
                "(DB_HOST for TCP, DB_INSTANCE_UNIX_SOCKET for the Cloud SQL proxy socket)"
            )
        missing = _missing(env, _SOCKET_REQUIRED)
        if missing:
            raise ConfigurationError(_half_set_message(present, missing, _SOCKET_REQUIRED))
        socket_dir = env["DB_INSTANCE_UNIX_SOCKET"].rstrip("/") or "/"
        url = URL.create(
            DRIVER,
            username=env["DB_USER"],
            password=env["DB_PASSWORD"],
            database=env["DB_NAME"],
        )
        unix_sock = os.path.join(socket_dir, CLOUD_SQL_SOCKET_NAME)
        return attrs.evolve(tuned, url=url, unix_sock=unix_sock, mode="unix_socket")

    missing = _missing(env, _TCP_REQUIRED)
    if missing:
        raise ConfigurationError(_half_set_message(present, missing, _TCP_REQUIRED))
    port = _int_setting(env, "DB_PORT", 5432)
    if port is None or not 0 < port < 65536:
        raise ConfigurationError(f"DB_PORT must be a TCP port number, got {env.get('DB_PORT')!r}")
    url = URL.create(
        DRIVER,
        username=env["DB_USER"],
        password=env["DB_PASSWORD"],
        host=env["DB_HOST"],
        port=port,
        database=env["DB_NAME"],
    )
    return attrs.evolve(tuned, url=url, mode="tcp")
