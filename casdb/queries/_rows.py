"""The one path from a statement to records, shared by every area.

An operation checks its arguments, builds a statement, and fetches it with one of these:
the statement runs inside casdb._checks.translated_errors (given the connection, so that a
failure of the network invalidates it), and each row becomes a record. A record is an attrs
class (its fields read by name from the row) or any callable taking the row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from sqlalchemy import Column, Connection, CursorResult, Executable, Insert, Row, Table

from casdb._checks import translated_errors
from casdb.errors import AlreadyExists, NotFound

R = TypeVar("R")


def record_columns(
    table: Table, record: type[Any], *, exclude: Sequence[str] = ()
) -> list[Column[Any]]:
    """The columns of ``table`` named by the fields of the attrs class ``record``, in order."""
    return [table.c[f.name] for f in attrs.fields(record) if f.name not in exclude]


def to_record(into: Callable[..., R], row: Row[Any]) -> R:
    """``row`` as a record: an attrs class gets its fields by name, a callable gets the row."""
    if isinstance(into, type) and attrs.has(into):
        values = row._mapping
        fields = attrs.fields(into)
        return into(**{f.name: values[f.name] for f in fields})  # type: ignore[return-value]
    return into(row)


def execute(
    connection: Connection,
    statement: Executable,
    *,
    unique: Mapping[str, str] | None = None,
    foreign_keys: Mapping[str, str] | None = None,
) -> CursorResult[Any]:
    """Run ``statement`` with its errors translated (see translated_errors)."""
    with translated_errors(unique=unique, foreign_keys=foreign_keys, connection=connection):
        return connection.execute(statement)


def fetch_optional(
    connection: Connection, statement: Executable, into: Callable[..., R], **maps: Any
) -> R | None:
    """Run ``statement``; return its one row as a record, or None when it returns none."""
    with translated_errors(connection=connection, **maps):
        row = connection.execute(statement).one_or_none()
    return None if row is None else to_record(into, row)


def fetch_one(
    connection: Connection,
    statement: Executable,
    into: Callable[..., R],
    *,
    missing: str,
    **maps: Any,
) -> R:
    """Run ``statement``; return its one row as a record. Raises NotFound(``missing``)."""
    found = fetch_optional(connection, statement, into, **maps)
    if found is None:
        raise NotFound(missing)
    return found


def fetch_created(
    connection: Connection, statement: Insert, into: Callable[..., R], *, field: str
) -> R:
    """Run an INSERT ... ON CONFLICT DO NOTHING RETURNING; return its one row as a record.

    Raises AlreadyExists(field=``field``) when the conflict left no row; the message names the
    row by its table's ``info["noun"]`` ("a user with this email already exists").
    """
    created = fetch_optional(connection, statement, into)
    if created is None:
        noun = statement.table.info["noun"]  # type: ignore[attr-defined]
        article = "an" if noun[0] in "aeiou" else "a"
        raise AlreadyExists(f"{article} {noun} with this {field} already exists", field=field)
    return created


def fetch_all(connection: Connection, statement: Executable, into: Callable[..., R]) -> list[R]:
    """Run ``statement``; return every row as a record, in the statement's order."""
    with translated_errors(connection=connection):
        rows = connection.execute(statement).all()
    return [to_record(into, row) for row in rows]


def fetch_scalar(connection: Connection, statement: Executable) -> Any:
    """Run ``statement``; return the one value of its one row."""
    with translated_errors(connection=connection):
        return connection.execute(statement).scalar_one()
