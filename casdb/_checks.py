"""Argument checks that run before any SQL, and the translation of database errors.

Every public operation validates its arguments with these helpers, so bad input raises
InvalidInput without a round trip, and maps the driver's errors to casdb's own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import math
import operator
import reprlib
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Select,
    Table,
    exists,
    literal,
    select,
)
from sqlalchemy import exc as sa_exc

from casdb.errors import AlreadyExists, CasdbError, DatabaseError, InvalidInput, NotFound

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UTC = dt.UTC

E = TypeVar("E", bound=enum.Enum)


def check_text(
    name: str, value: object, *, max_length: int = 255, allow_empty: bool = False
) -> str:
    """Return ``value`` (as a plain str) if it is a str that fits a varchar(max_length) column,
    else raise InvalidInput."""
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string, got {type(value).__name__}")
    if not allow_empty and value == "":
        raise InvalidInput(f"{name} must not be empty")
    if len(value) > max_length:
        raise InvalidInput(f"{name} is {len(value)} characters long; the limit is {max_length}")
    if "\x00" in value:
        raise InvalidInput(f"{name} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{name} contains a lone surrogate (not valid UTF-8)") from None
    return value if type(value) is str else str.__str__(value)  # a subclass's __str__ may lie


def check_optional_text(
    name: str, value: object, *, max_length: int = 255, allow_empty: bool = True
) -> str | None:
    """Like check_text, but None passes through."""
    if value is None:
        return None
    return check_text(name, value, max_length=max_length, allow_empty=allow_empty)


def check_email(value: object) -> str:
    """Return ``value`` if it is a plausible email (1-255 chars, one @, no spaces), else raise."""
    email = check_text("email", value)
    local, at, domain = email.partition("@")
    if not at or not local or not domain or "@" in domain:
        raise InvalidInput("email must have exactly one @ with text on both sides")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in email):
        raise InvalidInput("email must not contain whitespace or control characters")
    return email


class _ShortRepr(reprlib.Repr):
    """reprlib's bounded repr (depth, length), safe for huge ints and hostile reprs."""

    def repr_int(self, x: int, level: int) -> str:
        return repr(x) if -(10**12) < x < 10**12 else "<a huge integer>"

    def repr_instance(self, x: object, level: int) -> str:
        return repr(x) if type(x) in (bool, float, type(None)) else type(x).__name__


_short_repr = _ShortRepr()
_short_repr.maxlevel, _short_repr.maxstring, _short_repr.maxother = 3, 40, 40


def describe(value: object) -> str:
    """A short, safe rendering of ``value`` for a message: never huge, never recursive, never
    raising (a repr may be all three)."""
    try:
        return _short_repr.repr(value)
    except Exception:  # noqa: BLE001 - a hostile __repr__ or __len__
        return type(value).__name__


def check_int(
    name: str, value: object, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int:
    """Return ``value`` as a plain int if it is an integer within [minimum, maximum], else raise.

    Integers are what ``operator.index`` accepts (int subclasses, numpy integers), except
    bools; a huge value is never formatted into the message.
    """
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise InvalidInput(f"{name} must be an integer, got {type(value).__name__}")
    try:
        number = operator.index(value)  # type: ignore[arg-type]
    except Exception:  # noqa: BLE001 - a hostile __index__ is a bad argument
        raise InvalidInput(f"{name} must be an integer, got {type(value).__name__}") from None
    if not minimum <= number <= maximum:
        raise InvalidInput(
            f"{name} must be between {minimum} and {maximum}, got {describe(number)}"
        )
    return number


def check_optional_int(
    name: str, value: object, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int | None:
    """Like check_int, but None passes through."""
    if value is None:
        return None
    return check_int(name, value, minimum=minimum, maximum=maximum)


def check_bool(name: str, value: object) -> bool:
    """Return ``value`` if it is a bool, else raise."""
    if not isinstance(value, bool):
        raise InvalidInput(f"{name} must be true or false, got {type(value).__name__}")
    return value


def check_enum(name: str, value: object, enum_type: type[E]) -> E:
    """Return the member of ``enum_type`` that ``value`` is or names, else raise."""
    if isinstance(value, enum_type):
        return value
    if isinstance(value, str) and value in enum_type.__members__:
        return enum_type[value]
    valid = ", ".join(enum_type.__members__)
    raise InvalidInput(f"{name} must be one of {valid}, got {describe(value)}")


def check_json(name: str, value: object) -> Any:
    """Return a plain copy (dict, list, str, int, float, bool, None) of ``value`` if it is a
    JSON document PostgreSQL's jsonb accepts, else raise InvalidInput."""

    def walk(item: object, depth: int) -> Any:
        if depth > 100:
            raise InvalidInput(f"{name} is nested more than 100 levels deep")
        if item is None or isinstance(item, bool):
            return item
        if isinstance(item, int):
            try:
                return int(int.__str__(item))  # a plain int that json.dumps can write
            except ValueError:
                raise InvalidInput(f"{name} holds an integer too long to write") from None
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{name} holds {item}, which JSON cannot represent")
            return float(item)
        if isinstance(item, str):
            return str.__str__(check_text(name, item, max_length=10**8, allow_empty=True))
        if isinstance(item, list | tuple):
            return [walk(element, depth + 1) for element in item]
        if isinstance(item, Mapping):
            copy = {}
            for key, element in item.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"{name} has a non-string key {describe(key)}")
                key = str.__str__(check_text(name, key, max_length=10**6, allow_empty=True))
                copy[key] = walk(element, depth + 1)
            return copy
        raise InvalidInput(f"{name} holds a {type(item).__name__}, which is not JSON")

    return walk(value, 0)


def check_time(name: str, value: object) -> dt.datetime:
    """Return ``value`` converted to UTC if it is a timezone-aware datetime, else raise.

    A naive datetime, a tzinfo whose offset is broken, or a time that leaves the datetime
    range once converted to UTC is InvalidInput. The one validator of times: the operations
    call it up front, and the UTC column type (casdb.tables.UTCDateTime) on every bind.
    """
    if not isinstance(value, dt.datetime):
        raise InvalidInput(f"{name} must be a datetime, got {type(value).__name__}")
    try:
        offset = value.utcoffset()
    except Exception:  # noqa: BLE001 - a tzinfo that raises, or returns a bad offset
        raise InvalidInput(f"{name} has a tzinfo whose utcoffset() fails") from None
    if offset is None:
        raise InvalidInput(f"{name} must be timezone-aware (UTC); got a naive datetime")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} is out of range once converted to UTC") from None
    except Exception:  # noqa: BLE001 - a hostile tzinfo
        raise InvalidInput(f"{name} has a tzinfo that cannot be converted to UTC") from None


def check_optional_time(name: str, value: object) -> dt.datetime | None:
    """Like check_time, but None passes through."""
    return None if value is None else check_time(name, value)


def values_where(
    table: Table, values: Mapping[str, Any], condition: ColumnElement[bool]
) -> Select[Any]:
    """SELECT ``values`` (typed as ``table``'s columns) only where ``condition`` holds.

    ``INSERT ... SELECT`` of this checks a parent row instead of letting a foreign key fail:
    a missing parent inserts no row rather than raising, so the caller's transaction stays
    usable. A value may be a ``bindparam`` (a prepared statement's shape), bound later.
    """
    return select(
        *[
            (
                value
                if isinstance(value, BindParameter)
                else literal(value, type_=table.c[name].type)
            ).label(name)
            for name, value in values.items()
        ]
    ).where(condition)


def row_exists(table: Table, column: str, value: object) -> ColumnElement[bool]:
    """Return ``EXISTS (SELECT FROM table WHERE column = value)``."""
    return exists().where(table.c[column] == value)


# SQLSTATEs after which running the transaction again may succeed: serialization failure
# (also a query canceled by a conflict with recovery on a standby), deadlock, and the
# server ending the session (admin shutdown, crash, not accepting connections yet).
_RETRYABLE: Final = frozenset({"40001", "40P01", "57P01", "57P02", "57P03"})

PLAN_CHANGED: Final = "cached plan must not change result type"
"""The server's refusal of a prepared statement whose table changed (SQLSTATE 0A000)."""


def server_fields(error: BaseException) -> dict[str, str]:
    """The fields of the server's ErrorResponse behind ``error`` (pg8000 puts them in
    ``args[0]``: "C" SQLSTATE, "M" message, "S" severity, "n" constraint); {} if none."""
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], dict):
        return {str(k): str(v) for k, v in args[0].items()}
    return {}


def server_message(error: BaseException) -> str:
    """The server's message for ``error`` (with its SQLSTATE), or the driver's first line.

    Never the statement or its bound parameters.
    """
    fields = server_fields(error)
    if fields:
        code = fields.get("C")
        return fields.get("M", "") + (f" (SQLSTATE {code})" if code else "")
    orig = error.orig if isinstance(error, sa_exc.DBAPIError) else error
    lines = str(orig).strip().splitlines()
    return lines[0] if lines else type(orig).__name__


def _invalidate(connection: Connection | None, error: BaseException) -> None:
    """Drop a connection whose link to the server may be out of step (SQLAlchemy does not
    see a raw socket error from the driver as a disconnect)."""
    if connection is not None and not connection.closed and not connection.invalidated:
        with contextlib.suppress(Exception):
            connection.invalidate(error if isinstance(error, Exception) else None)


def _database_error(
    error: sa_exc.DBAPIError,
    connection: Connection | None,
    unique: Mapping[str, str],
    foreign_keys: Mapping[str, str],
) -> CasdbError:
    fields = server_fields(error)
    code, constraint = fields.get("C"), fields.get("n", "")
    if code == "23505" and constraint in unique:
        field = unique[constraint]
        return AlreadyExists(f"a row with this {field} already exists", field=field)
    if code == "23503" and constraint in foreign_keys:
        return NotFound(foreign_keys[constraint])
    # FATAL, PANIC or class 08: the server ended the session; SQLAlchemy only knows the
    # driver's own "network error" and would keep such a connection in the pool.
    ended = fields.get("S") in ("FATAL", "PANIC") or (code or "").startswith("08")
    lost = error.connection_invalidated or ended
    if lost:
        _invalidate(connection, error)
    # A prepared statement whose table changed: casdb prepares it afresh on the next call.
    replanned = code == "0A000" and PLAN_CHANGED in fields.get("M", "")
    retryable = lost or replanned or code in _RETRYABLE
    return DatabaseError(
        f"database error: {server_message(error)}", sqlstate=code, retryable=retryable
    )


@contextlib.contextmanager
def translated_errors(
    *,
    unique: Mapping[str, str] | None = None,
    foreign_keys: Mapping[str, str] | None = None,
    connection: Connection | None = None,
) -> Iterator[None]:
    """Turn every failure of the database, the network or the driver into a casdb error.

    A unique violation becomes AlreadyExists(field), a foreign key violation NotFound, by
    the maps derived from casdb.tables.metadata (``unique``: constraint name -> field,
    ``foreign_keys``: constraint name -> message, add to or override them). Anything else
    from the database becomes DatabaseError (server message and SQLSTATE, never the bound
    parameters); a value the driver cannot send becomes InvalidInput. When the network
    fails, ``connection`` is invalidated, so that it is never reused out of step.
    """
    from casdb import tables  # tables imports this module (check_time)

    try:
        yield
    except CasdbError:
        raise
    except sa_exc.DBAPIError as error:
        raise _database_error(
            error,
            connection,
            {**tables.UNIQUE_FIELDS, **(unique or {})},
            {**tables.FOREIGN_KEY_MESSAGES, **(foreign_keys or {})},
        ) from None
    except sa_exc.StatementError as error:  # raised while binding: nothing was sent
        if isinstance(error.orig, CasdbError):
            raise error.orig from None
        raise InvalidInput(
            f"a value could not be sent to the database ({type(error.orig).__name__})"
        ) from None
    except sa_exc.PendingRollbackError:
        raise DatabaseError(
            "database error: the transaction is no longer usable (an earlier error or a lost "
            "connection); roll it back and run it again",
            retryable=True,
        ) from None
    except sa_exc.SQLAlchemyError as error:  # e.g. "This Connection is closed" (no parameters)
        lines = str(error.args[0] if error.args else "").strip().splitlines()
        raise DatabaseError(f"database error: {(lines or [type(error).__name__])[0]}") from None
    except OSError as error:  # includes TimeoutError: a raw socket error from the driver
        _invalidate(connection, error)
        reason = error.strerror or type(error).__name__
        raise DatabaseError(
            f"database error: lost the connection to the server ({reason})", retryable=True
        ) from None
