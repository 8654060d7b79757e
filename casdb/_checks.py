"""Argument checks that run before any SQL, and the translation of database errors.

Every public operation validates its arguments with these helpers, so bad input raises
InvalidInput without a round trip, and maps the driver's errors to casdb's own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import enum
import math
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, Table, exists, literal, select
from sqlalchemy import exc as sa_exc

from casdb.errors import AlreadyExists, DatabaseError, InvalidInput, NotFound

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
UTC = dt.UTC

E = TypeVar("E", bound=enum.Enum)


def check_text(
    name: str, value: object, *, max_length: int = 255, allow_empty: bool = False
) -> str:
    """Return ``value`` if it is a str that fits a varchar(max_length) column, else raise."""
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
    return value


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


def check_int(
    name: str, value: object, *, minimum: int = INT32_MIN, maximum: int = INT32_MAX
) -> int:
    """Return ``value`` if it is an int (not a bool) within [minimum, maximum], else raise."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput(f"{name} must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidInput(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


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
    raise InvalidInput(f"{name} must be one of {valid}, got {value!r}"[:500])


def check_json(name: str, value: object) -> Any:
    """Return ``value`` if it is a JSON document PostgreSQL's jsonb accepts, else raise."""

    def walk(item: object, depth: int) -> None:
        if depth > 100:
            raise InvalidInput(f"{name} is nested more than 100 levels deep")
        if item is None or isinstance(item, bool | int):
            return
        if isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidInput(f"{name} holds {item}, which JSON cannot represent")
            return
        if isinstance(item, str):
            check_text(name, item, max_length=10**8, allow_empty=True)
            return
        if isinstance(item, list | tuple):
            for element in item:
                walk(element, depth + 1)
            return
        if isinstance(item, Mapping):
            for key, element in item.items():
                if not isinstance(key, str):
                    raise InvalidInput(f"{name} has a non-string key {key!r}"[:200])
                check_text(name, key, max_length=10**6, allow_empty=True)
                walk(element, depth + 1)
            return
        raise InvalidInput(f"{name} holds a {type(item).__name__}, which is not JSON")

    walk(value, 0)
    return value


def to_db_time(name: str, value: object) -> dt.datetime:
    """Return the naive UTC wall-clock time the columns store for an aware datetime."""
    if not isinstance(value, dt.datetime):
        raise InvalidInput(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware (UTC); got a naive datetime")
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise InvalidInput(f"{name} is out of range once converted to UTC") from None


def optional_to_db_time(name: str, value: object) -> dt.datetime | None:
    """Like to_db_time, but None passes through."""
    return None if value is None else to_db_time(name, value)


def from_db_time(value: dt.datetime) -> dt.datetime:
    """Return the aware UTC datetime for a stored UTC wall-clock time."""
    return value.replace(tzinfo=UTC)


def optional_from_db_time(value: dt.datetime | None) -> dt.datetime | None:
    """Like from_db_time, but None passes through."""
    return None if value is None else from_db_time(value)


def values_where(
    table: Table, values: Mapping[str, Any], condition: ColumnElement[bool]
) -> Select[Any]:
    """SELECT ``values`` (typed as ``table``'s columns) only where ``condition`` holds.

    ``INSERT ... SELECT`` of this checks a parent row instead of letting a foreign key fail:
    a missing parent inserts no row rather than raising, so the caller's transaction stays
    usable.
    """
    return select(
        *[literal(value, type_=table.c[name].type).label(name) for name, value in values.items()]
    ).where(condition)


def row_exists(table: Table, column: str, value: object) -> ColumnElement[bool]:
    """Return ``EXISTS (SELECT FROM table WHERE column = value)``."""
    return exists().where(table.c[column] == value)


def _pg_error_fields(error: sa_exc.DBAPIError) -> dict[str, str]:
    args = getattr(error.orig, "args", ())
    if args and isinstance(args[0], dict):
        return {str(k): str(v) for k, v in args[0].items()}
    return {}


@contextlib.contextmanager
def translated_errors(
    *,
    unique: Mapping[str, str] | None = None,
    foreign_keys: Mapping[str, str] | None = None,
) -> Iterator[None]:
    """Turn driver errors into casdb errors.

    ``unique`` maps a unique constraint (or index) name to the field it guards:
    a violation becomes AlreadyExists(field). ``foreign_keys`` maps a foreign key name to a
    message: a violation becomes NotFound(message). Anything else from the database becomes
    DatabaseError, whose message carries the server's text but never the bound parameters.
    """
    try:
        yield
    except sa_exc.DBAPIError as error:
        fields = _pg_error_fields(error)
        code, constraint = fields.get("C", ""), fields.get("n", "")
        if code == "23505" and unique and constraint in unique:
            field = unique[constraint]
            raise AlreadyExists(f"a row with this {field} already exists", field=field) from None
        if code == "23503" and foreign_keys and constraint in foreign_keys:
            raise NotFound(foreign_keys[constraint]) from None
        if fields:
            message = fields.get("M", "")
        else:  # a driver-side failure (network error, closed connection): no server fields
            text = str(error.orig).strip().splitlines()
            message = text[0] if text else type(error.orig).__name__
        detail = f" (SQLSTATE {code})" if code else ""
        raise DatabaseError(f"database error: {message}{detail}") from None
