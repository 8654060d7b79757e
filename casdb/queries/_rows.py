"""The one path from a statement to records, shared by every area.

An operation checks its arguments, builds a statement, and fetches it with one of these:
the statement runs inside casdb._checks.translated_errors (given the connection, so that a
failure of the network invalidates it), and each row becomes a record. A record is an attrs
class (its fields read by name from the row) or any callable taking the row.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
from sqlalchemy import Column, Connection, CursorResult, Executable, Insert, Row, Select, Table
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.base import PGCompiler
from sqlalchemy.engine import Dialect

from casdb import _driver
from casdb._checks import translated_errors
from casdb.errors import AlreadyExists, NotFound

R = TypeVar("R")


def record_columns(
    table: Table, record: type[Any], *, exclude: Sequence[str] = ()
) -> list[Column[Any]]:
    """The columns of ``table`` named by the fields of the attrs class ``record``, in order."""
    return [table.c[f.name] for f in attrs.fields(record) if f.name not in exclude]


def to_record(into: Callable[..., R], row: Row[Any] | _PreparedRow) -> R:
    """``row`` as a record: an attrs class gets its fields by name, a callable gets the row."""
    if isinstance(into, type) and attrs.has(into):
        values = row._mapping
        fields = attrs.fields(into)
        return into(**{f.name: values[f.name] for f in fields})  # type: ignore[return-value]
    return into(row)


@attrs.frozen
class Prepared:
    """A statement for the hot small operations: run as a per-connection prepared statement.

    ``build(*shape)`` (a module-level function; with ``shape``, the cache key) returns the
    statement with named ``bindparam``s; ``values`` binds them. ``shape`` (hashable) selects
    among the statements one builder makes, e.g. the columns an INSERT sets. The fetch
    helpers below accept it wherever they accept a statement: same rows, same records, same
    errors, one round trip a call.
    """

    build: Callable[..., Select[Any] | Insert]
    values: Mapping[str, Any]
    shape: tuple[Any, ...] = ()


@attrs.frozen
class _Form:
    """A Prepared statement compiled once per dialect: SQL, bind and result processors.

    ``binds`` are the parameters the caller's values fill; ``constants`` the values the
    builder fixed (e.g. an enum member compared with), bound on every run as they are.
    """

    sql: str
    binds: tuple[tuple[str, Any], ...]
    constants: Mapping[str, Any]
    keys: tuple[str, ...]
    results: tuple[Any, ...]


@functools.lru_cache(maxsize=256)
def _form(
    build: Callable[..., Select[Any] | Insert], shape: tuple[Any, ...], dialect: Dialect
) -> _Form:
    dialect_class: Any = type(dialect)
    named = dialect_class(paramstyle="named")  # pg8000's prepare takes :name parameters
    # pg8000's own compiler writes % as %% (for its format paramstyle) whatever the paramstyle;
    # prepare sends the text as it is, so the plain PostgreSQL compiler writes it.
    named.statement_compiler = PGCompiler
    compiled: Any = build(*shape).compile(dialect=named)
    binds, constants = [], {}
    for bind, name in compiled.bind_names.items():
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if bind.required:
            binds.append((name, process))
        else:
            value = bind.effective_value
            constants[name] = value if process is None else process(value)
    columns = compiled._result_columns  # (key, name, objects, type) of each selected column
    return _Form(
        sql=compiled.string,
        binds=tuple(binds),
        constants=constants,
        keys=tuple(column[0] for column in columns),
        results=tuple(
            column[3].dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ),
    )


class _PreparedRow:
    """A row of a Prepared statement as the record mappers read rows: ``_mapping``, attributes."""

    __slots__ = ("_mapping",)

    def __init__(self, mapping: dict[str, Any]) -> None:
        self._mapping = mapping

    def __getattr__(self, name: str) -> Any:
        try:
            return self._mapping[name]
        except KeyError:
            raise AttributeError(name) from None


def _run_prepared(connection: Connection, prepared: Prepared) -> list[Any]:
    form = _form(prepared.build, prepared.shape, connection.dialect)
    values = {
        name: prepared.values[name] if process is None else process(prepared.values[name])
        for name, process in form.binds
    }
    values.update(form.constants)
    rows = _driver.run_prepared(connection, form.sql, values)
    return [
        _PreparedRow(
            {
                key: value if process is None else process(value)
                for key, process, value in zip(form.keys, form.results, row, strict=True)
            }
        )
        for row in rows
    ]


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
    connection: Connection, statement: Executable | Prepared, into: Callable[..., R], **maps: Any
) -> R | None:
    """Run ``statement``; return its one row as a record, or None when it returns none."""
    with translated_errors(connection=connection, **maps):
        if isinstance(statement, Prepared):
            rows = _run_prepared(connection, statement)
            if len(rows) > 1:
                raise sa_exc.MultipleResultsFound(
                    "Multiple rows were found when one or none was required"
                )
            row: Any = rows[0] if rows else None
        else:
            row = connection.execute(statement).one_or_none()
    return None if row is None else to_record(into, row)


def fetch_one(
    connection: Connection,
    statement: Executable | Prepared,
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
