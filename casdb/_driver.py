"""The pg8000 seam: the only code of casdb that reaches under SQLAlchemy to the driver.

The bulk paths talk to pg8000 directly: COPY has no SQLAlchemy API, and lookups skip
SQLAlchemy's Row objects (~2.5 us each). Doing so bypasses SQLAlchemy's bookkeeping of the
connection, so this module does what SQLAlchemy's own execute does:

* a server error (pg8000 read the reply up to ReadyForQuery: the protocol is in step) is
  raised as SQLAlchemy's DBAPIError, for casdb._checks.translated_errors to translate;
* ANY other exception escaping the driver (a network error, KeyboardInterrupt, a TimeoutError
  from a signal handler or PyThreadState_SetAsyncExc, a bug) may have left unread replies on
  the socket or a half-written message: the connection is invalidated, so that the pool never
  hands it, out of step, to the next caller (who would read this statement's rows).

It also hands the engine pg8000's socket (for timeouts and keepalives), turns TCP_NODELAY on
(libpq does; pg8000 does not) and, while a COPY streams, watches the socket for the server's
early ErrorResponse, so that a rejected COPY stops sending.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
from collections.abc import Iterable, Iterator
from typing import Any

import pg8000.exceptions
from pg8000.converters import make_params
from pg8000.core import Context
from sqlalchemy import Connection, NestedTransaction
from sqlalchemy import exc as sa_exc

from casdb._checks import PLAN_CHANGED
from casdb._copy_text import ABORT_COPY
from casdb.errors import InvalidInput

_ERROR_RESPONSE = ord("E")


def _driver_connection(connection: Connection) -> Any:
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None, "a live connection has a driver connection"
    return driver_connection


def _autocommit_state(connection: Connection) -> tuple[bool, bool]:
    """(AUTOCOMMIT mode, a transaction block open on the server) of ``connection``.

    pg8000 tracks the server's transaction status from every ReadyForQuery.
    """
    with _usable("COPY"):
        driver_connection = _driver_connection(connection)
    return bool(driver_connection.autocommit), bool(driver_connection._in_transaction)


def _answered_by_server(error: BaseException) -> bool:
    """Whether ``error`` is the server's reply: pg8000 raises it after reading ReadyForQuery."""
    return (
        isinstance(error, pg8000.exceptions.Error)
        and bool(error.args)
        and isinstance(error.args[0], dict)
    )


def _invalidate(connection: Connection, error: BaseException) -> None:
    if not connection.closed and not connection.invalidated:
        connection.invalidate(error)


@contextlib.contextmanager
def _usable(statement: str) -> Iterator[None]:
    """SQLAlchemy's refusals to use a connection at all as DBAPIError, as its execute would be.

    A closed connection (ResourceClosedError) or one invalidated inside a transaction not yet
    rolled back (PendingRollbackError): translated_errors makes them a DatabaseError.
    """
    try:
        yield
    except sa_exc.InvalidRequestError as error:
        raise sa_exc.DBAPIError(statement, None, error) from None


@contextlib.contextmanager
def _on_driver(connection: Connection, statement: str) -> Iterator[Any]:
    """The pg8000 connection of ``connection`` for ``statement``; it is left in step.

    Autobegins as ``connection.execute`` would (the caller owns the transaction). Raises
    DBAPIError for a server error (the connection stays usable as the transaction allows), for
    a driver or network failure (``connection_invalidated`` then set; a socket timeout says
    which setting bounded the wait, as the engine's own errors do) and for a connection
    SQLAlchemy refuses to use; any other exception is re-raised unchanged after invalidating
    the connection.
    """
    with _usable(statement):
        if not connection.in_transaction():
            connection.begin()
        driver_connection = _driver_connection(connection)
    _set_tcp_nodelay(driver_connection)
    try:
        yield driver_connection
    except BaseException as error:
        answered = _answered_by_server(error)
        waited = _socket_timeout(driver_connection) if isinstance(error, TimeoutError) else None
        if not answered:
            _invalidate(connection, error)
        if isinstance(error, TimeoutError):
            text = "network error: no reply from the server in time"
            if waited is not None:
                text += f" (waited {waited:g} s, DB_SOCKET_TIMEOUT_S)"
            raise sa_exc.DBAPIError(
                statement, None, pg8000.exceptions.InterfaceError(text), connection_invalidated=True
            ) from None
        if isinstance(error, pg8000.exceptions.Error | OSError):
            # OSError: pg8000 lets some socket errors (ECONNRESET on a first read) through.
            raise sa_exc.DBAPIError(
                statement, None, error, connection_invalidated=not answered
            ) from None
        raise


def _socket_timeout(driver_connection: Any) -> float | None:
    try:
        sock = driver_socket(driver_connection)
    except Exception:  # the message only: never mask the error being handled
        return None
    return None if sock is None else sock.gettimeout()


@contextlib.contextmanager
def _raw_cursor(connection: Connection, statement: str) -> Iterator[Any]:
    """A pg8000 cursor of ``connection`` for ``statement``; raises what _on_driver raises."""
    with _on_driver(connection, statement) as driver_connection:
        cursor = driver_connection.cursor()
        try:
            yield cursor
        finally:
            cursor.close()  # no I/O: pg8000 only drops its references


def fetch_all(connection: Connection, statement: str, parameters: tuple[Any, ...]) -> list[Any]:
    """Run ``statement`` on the driver's cursor and return pg8000's rows (lists of values).

    The reply is read whole before this returns. Raises what :func:`_raw_cursor` raises.
    """
    with _raw_cursor(connection, statement) as cursor:
        cursor.execute(statement, parameters)
        rows: list[Any] = cursor.fetchall()
    return rows


# --------------------------------------------------------------------------------------------
# Prepared statements, one cache per DBAPI connection
# --------------------------------------------------------------------------------------------

PREPARED_PER_CONNECTION = 64
"""At most this many statements stay prepared on one server connection (least recently used
are closed first)."""

_CACHE_KEY = "casdb.prepared_statements"
_BEGIN = "begin transaction"  # what pg8000 itself sends
_GONE = "26000"  # invalid_sql_statement_name: deallocated behind casdb (DEALLOCATE, DISCARD)


def run_prepared(connection: Connection, sql: str, values: dict[str, Any]) -> list[Any]:
    """Run ``sql`` (``:name`` parameters) as a statement prepared once per server connection.

    The first run on a connection prepares it (Parse/Describe, one round trip); every later one
    is Bind/Execute only (one round trip, no paramstyle scan). The cache lives in the pooled
    connection's ``info``, which SQLAlchemy clears when the connection is invalidated or
    replaced, so a statement never outlives its server session. A statement whose table
    changed under it ("cached plan must not change result type", after a migration) or that
    the session no longer has (``DEALLOCATE ALL``, ``DISCARD ALL``) is prepared again and run
    once more when that costs the caller nothing (AUTOCOMMIT, or the statement was the first
    of its transaction, which is then rolled back and begun anew); mid-transaction the error
    is raised (the transaction is aborted, as by any error; casdb marks it retryable) and the
    next call prepares afresh. Returns pg8000's rows. Raises what :func:`_on_driver` raises.
    """
    with _on_driver(connection, sql) as driver_connection:
        fields = pending_fatal_error(driver_connection)
        if fields is not None:  # the server ended this session while it was idle
            raise pg8000.exceptions.DatabaseError(fields)  # as the engine's own check raises
        cache = _statement_cache(connection, driver_connection)
        fresh = bool(driver_connection.autocommit) or not driver_connection._in_transaction
        try:
            return _run(driver_connection, _prepared(cache, driver_connection, sql), values)
        except pg8000.exceptions.DatabaseError as error:
            if not _statement_stale(error):
                raise
            del cache[sql]
            if not fresh:
                raise
            if not driver_connection.autocommit:
                driver_connection.rollback()  # only this statement ran in it
            return _run(driver_connection, _prepared(cache, driver_connection, sql), values)


def _run(driver_connection: Any, statement: Any, values: dict[str, Any]) -> list[Any]:
    """``statement.run(**values)``, with pg8000's BEGIN (when it would send one) in the same
    round trip: pg8000 waits for the BEGIN's reply before it sends the statement."""
    if driver_connection.autocommit or driver_connection._in_transaction:
        return list(statement.run(**values))
    params = make_params(driver_connection.py_types, statement.make_args(values))
    columns, decoders, sql = statement.row_desc, statement.input_funcs, statement.operation
    driver_connection.send_QUERY(_BEGIN)  # buffered: leaves with the statement below
    try:
        # Sends the statement and reads up to the first ReadyForQuery: the BEGIN's reply.
        driver_connection.execute_named(statement.name_bin, params, columns, decoders, sql)
    except pg8000.exceptions.DatabaseError as error:
        if _answered_by_server(error):  # the statement's reply is still to be read
            with contextlib.suppress(pg8000.exceptions.DatabaseError):
                driver_connection.handle_messages(Context(sql, columns=columns))
        raise
    context = Context(sql, columns=columns, input_funcs=decoders)
    driver_connection.handle_messages(context)  # the statement's reply
    return list(context.rows)


def _statement_stale(error: pg8000.exceptions.DatabaseError) -> bool:
    """Whether the server refused a cached statement itself (not the values or the data)."""
    if not _answered_by_server(error):
        return False
    fields = error.args[0]
    return fields.get("C") == _GONE or PLAN_CHANGED in str(fields.get("M"))


def _statement_cache(connection: Connection, driver_connection: Any) -> dict[str, Any]:
    """The prepared statements of ``driver_connection``, by SQL text (least recent first)."""
    info = connection.connection.info
    owner, cache = info.get(_CACHE_KEY, (None, None))
    if owner is not driver_connection or cache is None:
        cache = {}
        info[_CACHE_KEY] = (driver_connection, cache)
    return cache  # type: ignore[no-any-return]


def _prepared(cache: dict[str, Any], driver_connection: Any, sql: str) -> Any:
    statement = cache.pop(sql, None)
    if statement is None:
        while cache and len(cache) >= PREPARED_PER_CONNECTION:
            cache.pop(next(iter(cache))).close()  # the least recent; Close + Sync frees it
        statement = driver_connection.prepare(sql)
    cache[sql] = statement  # now the most recent
    return statement


def prepared_count(connection: Connection) -> int:
    """How many statements casdb keeps prepared on ``connection``'s server session."""
    _owner, cache = connection.connection.info.get(_CACHE_KEY, (None, {}))
    return len(cache)


def copy_all_or_nothing(connection: Connection, statement: str, chunks: Iterable[bytes]) -> int:
    """:func:`copy_from_stdin`, all or nothing whatever the connection's mode.

    Inside a transaction the COPY runs in a savepoint, rolled back on any error, so that the
    caller's transaction stays usable. On an AUTOCOMMIT connection it runs bare: one statement
    is atomic by itself and is committed when it returns (a savepoint there would open a
    transaction that nobody commits). An AUTOCOMMIT connection on which the server has a
    transaction block open (an explicit BEGIN, or a stray one) is refused with InvalidInput
    before any SQL: what the COPY wrote would not be committed when it returns.
    """
    autocommit, in_block = _autocommit_state(connection)
    if autocommit and in_block:
        raise InvalidInput(
            "the connection is in AUTOCOMMIT mode but the server has a transaction block open, "
            "so the rows would not be committed on return: commit or roll it back first"
        )
    if autocommit:
        return copy_from_stdin(connection, statement, chunks)
    with _usable(statement):
        savepoint = connection.begin_nested()
    try:
        written = copy_from_stdin(connection, statement, chunks)
    except BaseException:
        _roll_back(connection, savepoint)
        raise
    savepoint.commit()
    return written


def _roll_back(connection: Connection, savepoint: NestedTransaction) -> None:
    """Roll the savepoint back, unless the connection is lost (the error at hand says why)."""
    if connection.invalidated or not savepoint.is_active:
        return
    try:
        savepoint.rollback()
    except sa_exc.DBAPIError:
        pass  # the connection broke meanwhile: SQLAlchemy invalidated it; the caller rolls back


def copy_from_stdin(connection: Connection, statement: str, chunks: Iterable[bytes]) -> int:
    """Run ``COPY ... FROM STDIN`` streaming ``chunks`` (COPY text); return the rows written.

    If producing a chunk raises, the COPY is made to fail (an exception must not escape into
    pg8000 mid-COPY: the protocol would be left in copy-in mode) and that exception is
    re-raised once the server has answered, the connection in step (the transaction or
    savepoint aborted). If the server rejects the COPY while it streams (a duplicate key, a
    statement timeout), no further chunk is produced or sent: its error is raised after at most
    one more chunk. Raises what :func:`_raw_cursor` raises.
    """
    failures: list[BaseException] = []
    try:
        with _raw_cursor(connection, statement) as cursor:
            stream = _guarded(chunks, _driver_connection(connection), failures)
            cursor.execute(statement, stream=stream)
            written = int(cursor.rowcount)
    except sa_exc.DBAPIError:
        if failures:
            raise failures[0] from None
        raise
    if failures:  # pragma: no cover - the server cannot accept the aborting row
        raise failures[0]
    return written


def _guarded(
    chunks: Iterable[bytes], driver_connection: Any, failures: list[BaseException]
) -> Iterator[bytes]:
    """Pass ``chunks`` on to pg8000, ending the stream with a failing row when it must stop.

    It stops when producing a chunk fails (the error is kept in ``failures``) and when the
    server has answered mid-stream (it only does so to reject the COPY). Ending with the
    aborting row rather than just ending means a stopped stream can never commit part of the
    rows; when the server has already failed the COPY, the row is discarded unread.
    """
    try:
        for chunk in chunks:
            yield chunk
            if _server_rejected(driver_connection):
                yield ABORT_COPY
                return
    except GeneratorExit:
        raise
    except BaseException as error:  # noqa: B036 - re-raised by copy_from_stdin
        failures.append(error)
        yield ABORT_COPY


def _server_rejected(driver_connection: Any) -> bool:
    """Whether the server has sent an ErrorResponse (or closed the connection) mid-COPY.

    Zero-timeout poll of pg8000's socket; when it is readable, the bytes are peeked through
    pg8000's own buffered reader, which keeps them for pg8000 to read after the stream ends
    (TLS included: the reader holds decrypted bytes). A NoticeResponse at the head does not
    count; an ErrorResponse queued behind one is then not noticed (casdb's tables have no
    triggers that raise notices) and the COPY streams to its end, as without this check.
    """
    sock = driver_socket(driver_connection)
    reader = getattr(driver_connection, "_sock", None)  # pg8000's buffered reader
    if sock is None or reader is None:
        return False
    try:
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            poller = select.poll()  # not select(): a service may hold more than 1024 fds
            poller.register(sock, select.POLLIN | select.POLLPRI)
            if not poller.poll(0):
                return False
        head: bytes = reader.peek(1)  # one read at most, of bytes that are already there
    except (OSError, ValueError):  # reset or closed: stop sending, pg8000 reports it
        return True
    return not head or _holds_error_response(head)


def _holds_error_response(data: bytes) -> bool:
    """Whether a backend message that starts in ``data`` (read from a message boundary) is
    an ErrorResponse."""
    offset = 0
    while offset < len(data):
        if data[offset] == _ERROR_RESPONSE:
            return True
        if offset + 5 > len(data):
            return False
        (length,) = struct.unpack_from("!i", data, offset + 1)
        if length < 4:  # not a message boundary after all: make no claim
            return False
        offset += 1 + length
    return False


def driver_socket(dbapi_connection: Any) -> socket.socket | None:
    """Return the socket (plain or TLS) under a pg8000 connection; None once it is closed.

    Raises RuntimeError when pg8000 no longer keeps it where casdb looks (``_usock``).
    """
    try:
        sock = dbapi_connection._usock
    except AttributeError:
        raise RuntimeError(
            "this pg8000 version keeps its socket elsewhere: casdb cannot bound its waits"
        ) from None
    return sock if isinstance(sock, socket.socket) else None


def _set_tcp_nodelay(driver_connection: Any) -> None:
    """Turn Nagle's algorithm off on pg8000's TCP socket, as libpq does on every connection.

    COPY is the one exchange where the client sends twice in a row (the last data, then
    CopyDone + Sync) without a reply in between: with Nagle on, the second send waits for the
    server's delayed ACK, 40 ms on Linux, added to every COPY however small.
    """
    sock = driver_socket(driver_connection)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def pending_fatal_error(driver_connection: Any) -> dict[str, str] | None:
    """Return the fields of a FATAL ErrorResponse waiting on an idle pg8000 connection.

    A server that ends an idle session (a conflict with recovery on a standby,
    pg_terminate_backend, a shutdown) sends a FATAL ErrorResponse and closes; the next
    statement sent then makes the kernel reset the socket, dropping the message. The engine
    calls this before each statement (casdb.engine). Reads nothing unless an ErrorResponse is
    at the head: any other message is left for pg8000. Returns None when nothing waits or the
    connection cannot be probed (it never raises: the statement then runs as it would have).
    """
    try:
        sock = driver_socket(driver_connection)
        reader = getattr(driver_connection, "_sock", None)  # pg8000's buffered reader
        if sock is None or reader is None:
            return None
        if not (isinstance(sock, ssl.SSLSocket) and sock.pending()):
            poller = select.poll()  # not select(): a service may hold more than 1024 fds
            poller.register(sock, select.POLLIN | select.POLLPRI)
            if not poller.poll(0):
                return None
        if reader.peek(1)[:1] != bytes([_ERROR_RESPONSE]):
            return None
        _code, length = struct.unpack("!ci", reader.read(5))
        body = reader.read(length - 4)
    except Exception:
        return None
    fields = {
        part[:1].decode("ascii", "replace"): part[1:].decode("utf-8", "replace")
        for part in body.split(b"\x00")
        if part
    }
    return fields or None
