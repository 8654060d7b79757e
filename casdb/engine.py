"""The engine factory. casdb creates no engine at import time; callers own theirs.

A casdb engine bounds every wait for the server:

* connecting (TCP connect, TLS, the startup and authentication exchange) waits at most
  ``connect_timeout_s`` (DB_CONNECT_TIMEOUT_S);
* while the pool holds a connection (its pre-ping at checkout, its rollback on return) each
  wait is bounded the same way;
* while a caller holds it, each wait is bounded by ``socket_timeout_s`` (DB_SOCKET_TIMEOUT_S;
  none by default), and TCP keepalives find a dead peer of an idle TCP connection.

A network failure or timeout invalidates the connection (the pool drops it), so no later
caller meets a connection out of step with the server.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

import sqlalchemy
from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from casdb._driver import driver_socket, pending_fatal_error
from casdb.config import (
    DatabaseConfig,
    config_for_url,
    config_from_env,
    parse_bool,
    reader_config_from_env,
)
from casdb.errors import ConfigurationError
from casdb.local import default_server

__all__ = [
    "config_for_url",
    "create_engine",
    "create_engines",
    "local_default_config",
    "resolve_config",
]

_log = logging.getLogger(__name__)

LOCAL_OPT_IN = "CASDB_LOCAL"

# A dead peer of an idle TCP connection is found after about IDLE + INTERVAL * COUNT = 2 min.
KEEPALIVE_IDLE_S = 60
KEEPALIVE_INTERVAL_S = 10
KEEPALIVE_COUNT = 6

_FRESH = "casdb_fresh"  # connection_record.info key: connected, not yet checked out
_FATAL = "casdb_server_closed"  # set on the error made of a FATAL message read while idle

_NOTHING_CONFIGURED = (
    "no database configured: set SQLALCHEMY_DATABASE_URI, or DB_HOST, DB_USER, DB_PASSWORD "
    "and DB_NAME (DB_PORT optional) for TCP, or DB_INSTANCE_UNIX_SOCKET, DB_USER, DB_PASSWORD "
    "and DB_NAME for the Cloud SQL proxy socket; to use a private local PostgreSQL instead, "
    f"opt in with create_engine(allow_local=True) or {LOCAL_OPT_IN}=1 (it needs the 'local' "
    "extra: pip install 'casdb[local]')"
)


def local_default_config() -> DatabaseConfig:
    """Start (or reuse) the per-user local PostgreSQL and return its configuration.

    Logs where it is on the ``casdb`` logger (INFO). Raises ConfigurationError when the
    server cannot be started or the ``local`` extra is not installed.
    """
    server = default_server()
    url = server.start()
    _log.info(
        "no DB_* variables set: using the local embedded PostgreSQL at %s (data in %s)",
        url.render_as_string(hide_password=True),
        server.data_dir,
    )
    return DatabaseConfig(url=url, mode="local")


def _local_opted_in() -> bool:
    raw = os.environ.get(LOCAL_OPT_IN, "").strip()
    return bool(raw) and parse_bool(LOCAL_OPT_IN, raw)


def resolve_config(
    config: DatabaseConfig | None = None, *, allow_local: bool = False
) -> DatabaseConfig:
    """Return ``config``, else the environment's configuration, else the local default.

    The local default applies only when the caller opts in (``allow_local=True`` or
    ``CASDB_LOCAL=1``): a service whose secrets failed to mount must fail, not write into a
    private empty database. Raises ConfigurationError for a half-set or malformed
    environment, and for no configuration at all without the opt-in (naming the variables).
    """
    if config is not None:
        return config
    from_env = config_from_env()
    if from_env is not None:
        return from_env
    if allow_local or _local_opted_in():
        return local_default_config()
    raise ConfigurationError(_NOTHING_CONFIGURED)


def create_engine(
    config: DatabaseConfig | None = None,
    *,
    echo: bool = False,
    allow_local: bool = False,
    read_only: bool = False,
) -> Engine:
    """Return a pooled engine for ``config`` (default: from the environment, see ``config``).

    Bound parameters are hidden from logs and error messages so that secrets never leak.
    Every wait for the server is bounded as the module docstring says; a network error or
    timeout invalidates the connection. With ``read_only`` every session starts with
    ``default_transaction_read_only`` on: a write fails with SQLSTATE 25006 (see
    ``create_engines``). Raises ConfigurationError as ``resolve_config`` does.
    """
    config = resolve_config(config, allow_local=allow_local)
    connect_args = config.connect_args()
    if read_only:
        _add_option(connect_args, "-c default_transaction_read_only=on")
    engine = sqlalchemy.create_engine(
        config.url,
        connect_args=connect_args,
        pool_size=config.pool_size,
        max_overflow=config.max_overflow,
        pool_timeout=config.pool_timeout,
        pool_recycle=-1 if config.pool_recycle is None else config.pool_recycle,
        # casdb pings itself (see _install_lifecycle): SQLAlchemy's pre-ping, run through a
        # pg8000 cursor, opens a transaction that the caller then finds already begun.
        pool_pre_ping=False,
        hide_parameters=True,
        echo=echo,
    )
    _install_lifecycle(engine, config)
    return engine


def create_engines(
    config: DatabaseConfig | None = None,
    *,
    reader_config: DatabaseConfig | None = None,
    echo: bool = False,
    allow_local: bool = False,
) -> tuple[Engine, Engine]:
    """Return ``(writer, reader)`` engines: the primary, and a read replica for reads.

    With ``config=None`` both come from the environment: the writer as ``create_engine``
    reads it, the reader from ``SQLALCHEMY_READ_DATABASE_URI``, ``DB_READ_HOST`` (+
    ``DB_READ_PORT``) or ``DB_READ_INSTANCE_UNIX_SOCKET`` (``casdb.config.
    reader_config_from_env``). With an explicit ``config`` the reader is ``reader_config``
    (the environment is not read). With no reader configured the reader engine connects to
    the writer's server.

    The reader is always a second engine whose sessions are read-only
    (``default_transaction_read_only``), even on the writer's server: a write misrouted to the
    reader then fails the same way (SQLSTATE 25006, a casdb DatabaseError) with or without a
    replica, so a deployment without one finds the bug before a replica is added. Its pool is
    separate (same settings, connections opened only when used).

    Raises ConfigurationError for a half-set or malformed writer or reader configuration.
    """
    if config is None:
        from_env = config_from_env()
        if reader_config is None:
            reader_config = reader_config_from_env(from_env)
        writer_config = resolve_config(from_env, allow_local=allow_local)
    else:
        writer_config = config
    writer = create_engine(writer_config, echo=echo)
    reader = create_engine(reader_config or writer_config, echo=echo, read_only=True)
    return writer, reader


def _add_option(connect_args: dict[str, Any], option: str) -> None:
    params = connect_args.setdefault("startup_params", {})
    params["options"] = f"{params['options']} {option}" if params.get("options") else option


def _reason(error: BaseException) -> str:
    return str(error).strip() or type(error).__name__


def _ping(dbapi_connection: Any) -> None:
    """Ask the server for an empty reply without opening a transaction.

    pg8000 sends BEGIN before the first statement of a non-autocommit connection: a ping in
    that mode left every reused connection inside a transaction, so AUTOCOMMIT statements
    such as VACUUM failed with SQLSTATE 25001.
    """
    autocommit = dbapi_connection.autocommit
    dbapi_connection.autocommit = True
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(";")
        finally:
            cursor.close()
    finally:
        dbapi_connection.autocommit = autocommit


def _tune_keepalive(sock: socket.socket) -> None:
    """Turn TCP keepalives on with short timings (the system default waits 2 hours)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
    ):
        option = getattr(socket, name, None)
        if option is not None:  # not every platform has all three
            sock.setsockopt(socket.IPPROTO_TCP, option, value)


def _install_lifecycle(engine: Engine, config: DatabaseConfig) -> None:
    """Bound every wait and invalidate connections on network errors (see the module doc)."""
    pool_bound = config.connect_timeout_s
    caller_bound = config.socket_timeout_s
    dbapi = engine.dialect.loaded_dbapi

    @event.listens_for(engine, "do_connect")
    def connect(dialect: Any, _record: Any, cargs: Any, cparams: Any) -> Any:
        try:
            return dialect.loaded_dbapi.connect(*cargs, **cparams)
        except OSError as error:  # pg8000 lets errors of TLS and the startup exchange out raw
            if isinstance(error, TimeoutError):
                text = f"no reply from the server within {pool_bound:g} s (DB_CONNECT_TIMEOUT_S)"
            else:
                text = _reason(error)  # e.g. a TLS certificate that does not verify
            raise dbapi.InterfaceError(f"network error while connecting: {text}") from error

    @event.listens_for(engine, "connect")
    def connected(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        sock = driver_socket(dbapi_connection)
        if sock is not None:
            _tune_keepalive(sock)
        record.info[_FRESH] = True

    @event.listens_for(engine, "checkout")
    def checked_out(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        sock = driver_socket(dbapi_connection)
        fresh = record.info.pop(_FRESH, False)
        if config.pool_pre_ping and not fresh:
            if sock is not None:
                sock.settimeout(pool_bound)
            try:
                _ping(dbapi_connection)
            except Exception as error:
                # The pool replaces the connection (and the older ones beside it).
                raise sqlalchemy.exc.InvalidatePoolError(
                    f"pre-ping failed: {_reason(error)}"
                ) from error
        if sock is not None:
            sock.settimeout(caller_bound)

    @event.listens_for(engine, "reset")
    def returned(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        # Bound the pool's rollback-on-return like connecting.
        sock = driver_socket(dbapi_connection)
        if sock is not None and not state.terminate_only:
            sock.settimeout(pool_bound)

    @event.listens_for(engine, "before_cursor_execute")
    def goodbye_first(
        conn: Any, _cursor: Any, _statement: Any, _params: Any, _context: Any, _many: Any
    ) -> None:
        # A server that ends an idle session (a conflict with recovery on a standby,
        # pg_terminate_backend, a shutdown) sends a FATAL ErrorResponse and closes. Sending
        # the next statement then makes the kernel reset the socket, which drops that message:
        # the caller learnt only "network error". Read it first and report the server's words.
        fields = pending_fatal_error(conn.connection.driver_connection)
        if fields is not None:
            error = dbapi.DatabaseError(fields)
            setattr(error, _FATAL, True)
            raise error

    @event.listens_for(engine, "handle_error")
    def network_errors_invalidate(context: ExceptionContext) -> BaseException | None:
        error = context.original_exception
        if getattr(error, _FATAL, False):
            context.is_disconnect = True  # the server has closed this session, not the others
            context.invalidate_pool_on_disconnect = False
            return None
        if not isinstance(error, OSError) or isinstance(error, dbapi.Error):
            return None
        # A socket error (reset, timeout, closed) raised raw through pg8000: the connection
        # is out of step with the server. Drop it, and report it as pg8000 reports its own
        # network errors. Only a lost connection (not a slow one) distrusts the whole pool.
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = not isinstance(error, TimeoutError)
        if isinstance(error, TimeoutError):
            waited = _socket_timeout(context)
            text = "network error: no reply from the server in time"
            if waited is not None:
                caller = waited == caller_bound
                setting = "DB_SOCKET_TIMEOUT_S" if caller else "DB_CONNECT_TIMEOUT_S"
                text += f" (waited {waited:g} s, {setting})"
        else:
            text = f"network error: {_reason(error)}"
        orig = dbapi.InterfaceError(text)
        orig.__cause__ = error
        return sqlalchemy.exc.InterfaceError(
            context.statement, None, orig, hide_parameters=True, connection_invalidated=True
        )


def _socket_timeout(context: ExceptionContext) -> float | None:
    """Return the timeout of the socket under the failed connection, when it can be known."""
    connection = context.connection
    if connection is None or connection.invalidated or connection.closed:
        return None
    try:
        sock = driver_socket(connection.connection.driver_connection)
    except Exception:  # the message only: never mask the error being handled
        return None
    return None if sock is None else sock.gettimeout()
