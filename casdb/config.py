"""Database configuration from the DB_* environment variables of the CAS deployments.

Three modes, the first that applies wins:

* ``SQLALCHEMY_DATABASE_URI`` — a full SQLAlchemy URL;
* Cloud SQL: ``DB_USER``, ``DB_PASSWORD``, ``DB_NAME``, ``DB_INSTANCE_UNIX_SOCKET`` — pg8000
  connects to ``<DB_INSTANCE_UNIX_SOCKET>/.s.PGSQL.5432``;
* TCP: ``DB_HOST``, ``DB_USER``, ``DB_PASSWORD``, ``DB_NAME`` and optionally ``DB_PORT``.

With none of them set there is no configuration: ``casdb.create_engine`` then refuses unless
the caller opts in to the local embedded PostgreSQL (``casdb.engine``). Every URL, from the
environment, the CLI's ``--url`` or :func:`config_for_url`, goes through :func:`normalise_url`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from ssl import SSLContext, create_default_context
from typing import Any, Literal

import attrs
from sqlalchemy import URL

from casdb._urls import DRIVER as DRIVER  # re-exported: the one URL normaliser lives there
from casdb._urls import normalise_url as normalise_url
from casdb.errors import ConfigurationError

CLOUD_SQL_SOCKET_NAME = ".s.PGSQL.5432"

Mode = Literal["url", "tcp", "unix_socket", "local"]

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

# The largest value PostgreSQL takes for a millisecond setting; seconds are bounded alike.
_MAX_MS = 2_147_483_647
_MAX_SECONDS = _MAX_MS / 1000

# --- settings: one validator per field, naming the variable that sets it --------------------

_VARIABLE_OF_FIELD = {
    "pool_size": "DB_POOL_SIZE",
    "max_overflow": "DB_MAX_OVERFLOW",
    "pool_timeout": "DB_POOL_TIMEOUT",
    "pool_recycle": "DB_POOL_RECYCLE",
    "pool_pre_ping": "DB_POOL_PRE_PING",
    "ssl": "DB_SSL",
    "ssl_root_cert": "DB_SSL_ROOT_CERT",
    "statement_timeout_ms": "DB_STATEMENT_TIMEOUT_MS",
    "lock_timeout_ms": "DB_LOCK_TIMEOUT_MS",
    "connect_timeout_s": "DB_CONNECT_TIMEOUT_S",
    "socket_timeout_s": "DB_SOCKET_TIMEOUT_S",
}
SETTING_VARIABLES = tuple(_VARIABLE_OF_FIELD.values())


def _name(attribute: attrs.Attribute[Any]) -> str:
    return f"{_VARIABLE_OF_FIELD[attribute.name]} ({attribute.name})"


def _shown_value(value: object) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return "an integer too large to show"  # str() of a huge int is slow, then refused
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _in_range(
    low: float,
    high: float,
    *,
    integer: bool = False,
    low_open: bool = False,
    optional: bool = False,
) -> Callable[..., None]:
    kinds = int if integer else int | float
    kind = "an integer" if integer else "a number"

    def check(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise ConfigurationError(
                f"{_name(attribute)} must be {kind}, got {_shown_value(value)}"
            )
        nan = value != value
        if nan or value < low or value > high or (low_open and value == low):
            bound = f"more than {low:g}" if low_open else f"at least {low:g}"
            raise ConfigurationError(
                f"{_name(attribute)} must be {bound} and at most {high:.10g}, "
                f"got {_shown_value(value)}"
            )

    return check


def _boolean(_instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigurationError(
            f"{_name(attribute)} must be true or false, got {_shown_value(value)}"
        )


def _hide_password(url: URL) -> str:
    return url.render_as_string(hide_password=True)


@attrs.frozen(kw_only=True)
class DatabaseConfig:
    """Everything needed to build an engine. ``repr`` never shows the password.

    Construction validates every setting (ConfigurationError naming its DB_* variable),
    including that ``ssl_root_cert`` is a readable PEM CA bundle.
    """

    url: URL = attrs.field(repr=_hide_password)
    mode: Mode = "url"
    unix_sock: str | None = None
    pool_size: int = attrs.field(default=5, validator=_in_range(1, _MAX_MS, integer=True))
    max_overflow: int = attrs.field(default=10, validator=_in_range(0, _MAX_MS, integer=True))
    pool_timeout: float = attrs.field(
        default=30.0, validator=_in_range(0, _MAX_SECONDS, low_open=True)
    )
    # None: never recycle (DB_POOL_RECYCLE=0).
    pool_recycle: int | None = attrs.field(
        default=1800, validator=_in_range(1, _MAX_MS, integer=True, optional=True)
    )
    pool_pre_ping: bool = attrs.field(default=True, validator=_boolean)
    ssl: bool = attrs.field(default=False, validator=_boolean)
    ssl_root_cert: str | None = None
    statement_timeout_ms: int | None = attrs.field(
        default=None, validator=_in_range(0, _MAX_MS, integer=True, optional=True)
    )
    lock_timeout_ms: int | None = attrs.field(
        default=None, validator=_in_range(0, _MAX_MS, integer=True, optional=True)
    )
    connect_timeout_s: float = attrs.field(
        default=10.0, validator=_in_range(0, _MAX_SECONDS, low_open=True)
    )
    # None: a wait for the server is bounded only by TCP (DB_SOCKET_TIMEOUT_S unset or 0).
    socket_timeout_s: float | None = attrs.field(
        default=None, validator=_in_range(0, _MAX_SECONDS, low_open=True, optional=True)
    )

    def __attrs_post_init__(self) -> None:
        if self.ssl_root_cert is not None and not self.ssl:
            raise ConfigurationError(
                "DB_SSL_ROOT_CERT (ssl_root_cert) is set but DB_SSL (ssl) is off: set DB_SSL=true "
                "to connect with TLS, or unset DB_SSL_ROOT_CERT"
            )
        if self.ssl:
            self.ssl_context()  # a missing or unreadable CA bundle fails here, not at connect

    def ssl_context(self) -> SSLContext:
        """Return a verifying TLS context (pg8000 without one verifies nothing).

        Raises ConfigurationError when ``ssl_root_cert`` is missing, unreadable or not PEM.
        """
        try:
            return create_default_context(cafile=self.ssl_root_cert)
        except OSError as error:  # FileNotFoundError, IsADirectoryError, ssl.SSLError, ...
            reason = error.strerror or error.__class__.__name__
            raise ConfigurationError(
                f"DB_SSL_ROOT_CERT (ssl_root_cert) {self.ssl_root_cert!r} cannot be used: "
                f"{reason}; it must name a readable PEM file of CA certificates"
            ) from None

    def connect_args(self) -> dict[str, Any]:
        """Return the keyword arguments for ``pg8000.connect`` beyond those in the URL.

        ``timeout`` is the connect timeout: casdb's engine narrows or widens it once the
        connection is made (see ``casdb.engine``).
        """
        args: dict[str, Any] = {"timeout": self.connect_timeout_s, "tcp_keepalive": True}
        if self.unix_sock is not None:
            args["unix_sock"] = self.unix_sock
        if self.ssl:
            args["ssl_context"] = self.ssl_context()
        options = []
        if self.statement_timeout_ms is not None:
            options.append(f"-c statement_timeout={self.statement_timeout_ms}")
        if self.lock_timeout_ms is not None:
            options.append(f"-c lock_timeout={self.lock_timeout_ms}")
        if options:
            args["startup_params"] = {"options": " ".join(options)}
        return args


def config_for_url(url: str | URL, **settings: Any) -> DatabaseConfig:
    """Return a configuration for an explicit URL with optional settings (DatabaseConfig fields).

    Raises ConfigurationError for a URL :func:`normalise_url` refuses or a bad setting.
    """
    return DatabaseConfig(url=normalise_url(url, source="the URL"), mode="url", **settings)


# --- reading the environment -----------------------------------------------------------------


def _shown(raw: str) -> str:
    return repr(raw if len(raw) <= 40 else raw[:40] + "...")


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be an integer, got {_shown(raw)}") from None


def _parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number of seconds, got {_shown(raw)}") from None
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number of seconds, got {_shown(raw)}")
    return value


def parse_bool(name: str, raw: str) -> bool:
    """Return the boolean a variable spells (1/0, true/false, yes/no, on/off).

    Raises ConfigurationError for anything else.
    """
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {_shown(raw)}")


def _zero_is_none(parse: Callable[[str, str], float]) -> Callable[[str, str], float | None]:
    def parse_or_none(name: str, raw: str) -> float | None:
        value = parse(name, raw)
        return None if value == 0 else value

    return parse_or_none


_PARSERS: dict[str, Callable[[str, str], object]] = {
    "DB_POOL_SIZE": _parse_int,
    "DB_MAX_OVERFLOW": _parse_int,
    "DB_POOL_TIMEOUT": _parse_seconds,
    "DB_POOL_RECYCLE": _zero_is_none(_parse_int),  # 0: never recycle
    "DB_POOL_PRE_PING": parse_bool,
    "DB_SSL": parse_bool,
    "DB_SSL_ROOT_CERT": lambda _name, raw: raw,
    "DB_STATEMENT_TIMEOUT_MS": _parse_int,
    "DB_LOCK_TIMEOUT_MS": _parse_int,
    "DB_CONNECT_TIMEOUT_S": _parse_seconds,
    "DB_SOCKET_TIMEOUT_S": _zero_is_none(_parse_seconds),  # 0: no socket timeout
}


def _settings(env: Mapping[str, str]) -> dict[str, Any]:
    """Return the DatabaseConfig fields the environment sets (an empty variable is unset)."""
    settings: dict[str, Any] = {}
    for field, name in _VARIABLE_OF_FIELD.items():
        raw = env.get(name)
        if raw is not None and raw.strip() != "":
            settings[field] = _PARSERS[name](name, raw.strip())
    return settings


def _missing(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    return [name for name in names if env.get(name) is None]


def _half_set_message(present: list[str], missing: list[str], needed: tuple[str, ...]) -> str:
    def verb(names: list[str]) -> str:
        return "is" if len(names) == 1 else "are"

    return (
        f"{', '.join(present)} {verb(present)} set but {', '.join(missing)} {verb(missing)} "
        f"missing: set all of {', '.join(needed)}"
        + (" (DB_PORT optional, default 5432)" if "DB_HOST" in needed else "")
        + ", or unset them all"
    )


def connection_variables_set(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the connection variables present in ``environ``."""
    env = os.environ if environ is None else environ
    return [name for name in CONNECTION_VARIABLES if env.get(name) is not None]


def _unix_socket_url(env: Mapping[str, str], present: list[str]) -> tuple[URL, str]:
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
        DRIVER, username=env["DB_USER"], password=env["DB_PASSWORD"], database=env["DB_NAME"]
    )
    return url, os.path.join(socket_dir, CLOUD_SQL_SOCKET_NAME)


def _tcp_url(env: Mapping[str, str], present: list[str]) -> URL:
    missing = _missing(env, _TCP_REQUIRED)
    if missing:
        raise ConfigurationError(_half_set_message(present, missing, _TCP_REQUIRED))
    raw_port = env.get("DB_PORT", "").strip()
    port = _parse_int("DB_PORT", raw_port) if raw_port else 5432
    if not 0 < port < 65536:
        raise ConfigurationError(f"DB_PORT must be a TCP port number, got {_shown(raw_port)}")
    return URL.create(
        DRIVER,
        username=env["DB_USER"],
        password=env["DB_PASSWORD"],
        host=env["DB_HOST"],
        port=port,
        database=env["DB_NAME"],
    )


def config_from_env(environ: Mapping[str, str] | None = None) -> DatabaseConfig | None:
    """Read the database configuration from ``environ`` (default: ``os.environ``).

    Returns None when no connection variable is set. Raises ConfigurationError for a half-set
    environment, naming the missing variables, and for malformed values, naming the variable.
    """
    env = os.environ if environ is None else environ
    present = connection_variables_set(env)
    if not present:
        return None
    settings = _settings(env)
    uri = env.get("SQLALCHEMY_DATABASE_URI")
    if uri is not None:
        url = normalise_url(uri, source="SQLALCHEMY_DATABASE_URI")
        return DatabaseConfig(url=url, mode="url", **settings)
    if env.get("DB_INSTANCE_UNIX_SOCKET") is not None:
        url, unix_sock = _unix_socket_url(env, present)
        return DatabaseConfig(url=url, mode="unix_socket", unix_sock=unix_sock, **settings)
    return DatabaseConfig(url=_tcp_url(env, present), mode="tcp", **settings)


# --- the reader (a read replica) beside the writer --------------------------------------------

READ_CONNECTION_VARIABLES = (
    "SQLALCHEMY_READ_DATABASE_URI",
    "DB_READ_HOST",
    "DB_READ_PORT",
    "DB_READ_INSTANCE_UNIX_SOCKET",
)


def reader_variables_set(environ: Mapping[str, str] | None = None) -> list[str]:
    """Return the names of the reader's connection variables present in ``environ``."""
    env = os.environ if environ is None else environ
    return [name for name in READ_CONNECTION_VARIABLES if env.get(name) is not None]


def _reader_url(writer: DatabaseConfig, **parts: Any) -> URL:
    # The reader logs in as the writer does: same user, password, database (and name).
    query = {k: v for k, v in writer.url.query.items() if k == "application_name"}
    return URL.create(
        DRIVER,
        username=writer.url.username,
        password=writer.url.password,
        database=writer.url.database,
        query=query,
        **parts,
    )


def reader_config_from_env(
    writer: DatabaseConfig | None, environ: Mapping[str, str] | None = None
) -> DatabaseConfig | None:
    """Return the read replica's configuration from ``environ`` (default: ``os.environ``).

    ``SQLALCHEMY_READ_DATABASE_URI`` (a full URL) wins, as the writer's URI does; otherwise
    ``DB_READ_HOST`` (+ ``DB_READ_PORT``, default 5432) or ``DB_READ_INSTANCE_UNIX_SOCKET``
    (a replica's Cloud SQL proxy socket directory) with the writer's user, password and
    database. Every other setting (pool, timeouts, TLS) is the writer's. Returns None when no
    reader variable is set: the reader is then the writer.

    Raises ConfigurationError for a half-set reader (DB_READ_PORT alone, both DB_READ_HOST and
    DB_READ_INSTANCE_UNIX_SOCKET, a bad port or URL), and for a reader without a writer.
    """
    env = os.environ if environ is None else environ
    present = reader_variables_set(env)
    if not present:
        return None
    if writer is None:
        raise ConfigurationError(
            f"{', '.join(present)} {'is' if len(present) == 1 else 'are'} set but no writer is "
            "configured: set SQLALCHEMY_DATABASE_URI or the DB_* variables of the primary too"
        )
    uri = env.get("SQLALCHEMY_READ_DATABASE_URI")
    if uri is not None:
        url = normalise_url(uri, source="SQLALCHEMY_READ_DATABASE_URI")
        return attrs.evolve(writer, url=url, mode="url", unix_sock=None)
    host, socket_dir = env.get("DB_READ_HOST"), env.get("DB_READ_INSTANCE_UNIX_SOCKET")
    if host is not None and socket_dir is not None:
        raise ConfigurationError(
            "both DB_READ_HOST and DB_READ_INSTANCE_UNIX_SOCKET are set: unset one of them "
            "(DB_READ_HOST for TCP, DB_READ_INSTANCE_UNIX_SOCKET for the replica's proxy socket)"
        )
    raw_port = env.get("DB_READ_PORT", "").strip()
    if socket_dir is not None:
        if raw_port:
            raise ConfigurationError(
                "DB_READ_PORT is set with DB_READ_INSTANCE_UNIX_SOCKET: a socket has no port; "
                "unset DB_READ_PORT"
            )
        path = os.path.join(socket_dir.rstrip("/") or "/", CLOUD_SQL_SOCKET_NAME)
        return attrs.evolve(writer, url=_reader_url(writer), mode="unix_socket", unix_sock=path)
    if host is None or not host.strip():
        raise ConfigurationError(
            "DB_READ_PORT is set but DB_READ_HOST is missing: set DB_READ_HOST (and optionally "
            "DB_READ_PORT) or DB_READ_INSTANCE_UNIX_SOCKET, or SQLALCHEMY_READ_DATABASE_URI, "
            "or unset them all (the reader is then the writer)"
        )
    port = _parse_int("DB_READ_PORT", raw_port) if raw_port else 5432
    if not 0 < port < 65536:
        raise ConfigurationError(f"DB_READ_PORT must be a TCP port number, got {_shown(raw_port)}")
    url = _reader_url(writer, host=host.strip(), port=port)
    return attrs.evolve(writer, url=url, mode="tcp", unix_sock=None)
