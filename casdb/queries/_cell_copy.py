"""The bulk write path of casdb.queries.cells: an iterable of rows streamed into one COPY.

casdb._copy_text validates and encodes the rows as they stream; the first chunk is encoded
before any SQL, so that a bad row among the first ones changes nothing on the server. The COPY
runs through casdb._driver, all or nothing, its errors translated into casdb errors.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import chain
from typing import Any

from sqlalchemy import Column, Connection, Table
from sqlalchemy.dialects.postgresql.base import PGDialect

from casdb import _driver
from casdb._checks import translated_errors
from casdb._copy_text import CopyLayout
from casdb.errors import InvalidInput


def build_copy_from_stdin(table: Table, columns: Sequence[Column[Any]]) -> str:
    """``COPY table (columns) FROM STDIN`` (text format); names come from the Table metadata.

    COPY has no Core construct; the identifiers are quoted by the PostgreSQL dialect.
    """
    assert all(column.table is table for column in columns), "columns of another table"
    preparer = PGDialect().identifier_preparer  # type: ignore[no-untyped-call]
    names = ", ".join(preparer.format_column(column) for column in columns)
    return f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"


def copy_rows(connection: Connection, layout: CopyLayout, rows: object) -> int:
    """Stream ``rows`` into ``layout.table`` with one COPY, all or nothing.

    Returns the number of rows written. Raises InvalidInput (``rows`` not an iterable of rows,
    a bad row), the casdb error of a server or network failure.
    """
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        raise InvalidInput("rows must be an iterable of records or mappings")
    chunks = layout.copy_chunks(rows)
    first = next(chunks, None)  # a bad row among the first ones fails before any SQL
    if first is None:
        return 0
    statement = build_copy_from_stdin(layout.table, layout.columns)
    with translated_errors(connection=connection):
        return _driver.copy_all_or_nothing(connection, statement, chain([first], chunks))
