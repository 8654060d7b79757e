"""The machinery behind the id-based operations of casdb.queries.cells.

Arguments are checked before any SQL: ids as int32 ints (int subclasses and numpy integers
too, bools not), column names against cells_cellinfo, the ``table`` word of the id-sequence
operations. A lookup statement is compiled once per column list and dialect; each chunk of
ids runs through casdb._driver in one round trip, its reply read whole (from BULK_MIN_IDS ids
on, as one JSON text of columns parsed by json.loads and put in the order of the ids here), and
becomes records with the cyclic garbage collector paused.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import gc
import json
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import islice, repeat
from typing import Any, Final, Generic, TypeVar

import attrs
from sqlalchemy import Connection, Executable, Select, Table, func
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from casdb import _driver
from casdb._checks import INT32_MAX, INT32_MIN, check_int, describe, translated_errors
from casdb.errors import InvalidInput
from casdb.tables import cells_cellinfo, cells_featureinfo

R = TypeVar("R")

CELL_COLUMN_NAMES: Final = tuple(column.name for column in cells_cellinfo.columns)
"""Every column of cells_cellinfo, in table order: the valid ``columns`` of lookups."""

_INDEXED: Final = {
    "cells": (cells_cellinfo, "cas_cell_index"),
    "features": (cells_featureinfo, "cas_feature_index"),
}

# --------------------------------------------------------------------------------------------
# Argument checks (before any SQL)
# --------------------------------------------------------------------------------------------


def index_column(table: object) -> tuple[Table, str]:
    """The Table and id column named by ``table`` ("cells" or "features"); else InvalidInput."""
    if not isinstance(table, str) or table not in _INDEXED:
        raise InvalidInput(f"table must be 'cells' or 'features', got {describe(table)}")
    return _INDEXED[table]


def index_sequence(table: str) -> Any:
    """The regclass of the id sequence of ``table`` (as index_column checks it), for SQL."""
    target, column = index_column(table)
    return func.pg_get_serial_sequence(target.name, column).cast(postgresql.REGCLASS)


def id_iterator(cell_ids: Iterable[Any], name: str = "cell_ids") -> Iterator[Any]:
    """An iterator over ``cell_ids`` (the argument ``name``); InvalidInput for a string, a
    mapping or a non-iterable."""
    if isinstance(cell_ids, str | bytes | Mapping):
        raise InvalidInput(f"{name} must be an iterable of integers")
    try:
        return iter(cell_ids)
    except TypeError:
        raise InvalidInput(
            f"{name} must be an iterable of integers, got {type(cell_ids).__name__}"
        ) from None


def checked_ids(values: list[Any], first: int = 0, name: str = "cell_ids") -> list[int]:
    """``values`` (``name``[first:...]) as int32 ints; InvalidInput naming the first bad one."""
    if not set(map(type, values)) <= {int}:
        for position, value in enumerate(values, first):
            if isinstance(value, bool | str) or not hasattr(value, "__index__"):
                raise InvalidInput(
                    f"{name}[{position}] must be an integer, got {type(value).__name__}"
                )
        values = [operator.index(value) for value in values]  # int subclasses, numpy integers
    if values and (min(values) < INT32_MIN or max(values) > INT32_MAX):
        for position, value in enumerate(values, first):
            check_int(f"{name}[{position}]", value)  # raises for the first out of range
    return values


def check_columns(columns: Iterable[str] | None) -> tuple[str, ...]:
    """``columns`` (None: all) as a tuple of cells_cellinfo names, first occurrences kept."""
    if columns is None:
        return CELL_COLUMN_NAMES
    if isinstance(columns, str | bytes):
        raise InvalidInput("columns must be a list of column names, not one string")
    try:
        given = list(columns)
    except TypeError:
        raise InvalidInput(
            f"columns must be a list of column names, got {type(columns).__name__}"
        ) from None
    unknown = [name for name in given if not isinstance(name, str) or name not in CELL_COLUMN_NAMES]
    if unknown:
        raise InvalidInput(
            f"unknown cells_cellinfo column(s) {', '.join(map(describe, unknown))}; "
            f"valid: {', '.join(CELL_COLUMN_NAMES)}"[:1000]
        )
    return tuple(dict.fromkeys(given))


# --------------------------------------------------------------------------------------------
# Fetching by chunks of ids
# --------------------------------------------------------------------------------------------

Into = Callable[[int, dict[str, Any]], R]
"""A record from (id, {column name: value})."""


@functools.lru_cache(maxsize=256)
def compiled_sql(
    build: Callable[[Sequence[str]], Select[Any]], names: tuple[str, ...], dialect: Dialect
) -> str:
    """``build(names)`` compiled for ``dialect`` (cached: compiling costs ~0.3 ms).

    ``build`` makes a SELECT of the columns ``names``, then the id, for the int[] ``:ids``.
    """
    compiled = build(names).compile(dialect=dialect)
    assert compiled.positiontup == ["ids"], "casdb runs on pg8000 (a positional paramstyle)"
    return compiled.string


_LAST: Final = operator.itemgetter(-1)

_JSONB_COLUMNS: Final = frozenset(
    column.name for column in cells_cellinfo.columns if isinstance(column.type, postgresql.JSONB)
)

BULK_MIN_IDS = 30
"""Chunks of at least this many ids take the bulk (JSON) statement, smaller ones the plain one
whose rows pg8000 decodes. Measured (benchmarks.bench_lookup --rows 1000000 --ids N --repeat
300, best of): at 10 ids both cost the same (444 vs 463 us, within the noise), at 30 the bulk
one saved 15%, at 100 28%; small lookups keep the statement they were measured with."""


@attrs.frozen
class Lookup(Generic[R]):
    """A compiled lookup statement, the names of its columns, and what makes a row a record.

    ``bulk`` (if set) is the same lookup serialised by the server as one JSON text holding one
    array per column, cas_cell_index first, of the distinct ids found
    (build_select_cells_json_by_ids), taken for chunks of BULK_MIN_IDS ids or more: ``json.loads``
    (C) parses it in a fraction of pg8000's per-field decoding, and C-level maps put the cells
    in the order of the ids.
    """

    statement: str
    names: tuple[str, ...]
    into: Into[R]
    bulk: str | None = None

    def fetch(self, connection: Connection, ids: list[int]) -> list[R]:
        """Look one chunk of ids up in one statement; the reply is read whole first."""
        bulk = self.bulk is not None and len(ids) >= BULK_MIN_IDS
        statement = self.bulk if bulk and self.bulk is not None else self.statement
        with translated_errors(connection=connection):
            rows = _driver.fetch_all(connection, statement, (int_array_text(ids),))
        if bulk:
            return self._from_columns(rows[0][0], ids)
        # Rows hold the requested columns, then the id. Built by C-level maps (no bytecode per
        # row: ~20% less than a list comprehension); zip stops at the names, before the id.
        values = map(dict, map(zip, repeat(self.names), rows))
        return list(map(self.into, map(_LAST, rows), values))

    def _from_columns(self, text: str | None, ids: list[int]) -> list[R]:
        """The records of the JSON ``text`` (ids found, then one array per name), ``ids`` order."""
        if text is None:
            return []
        found: list[int] | None
        found, *columns = json.loads(text)
        if found is None:  # json_agg of no rows is NULL
            return []
        position_of = dict(zip(found, range(len(found)), strict=True))
        order = list(filter(position_of.__contains__, ids))  # the ids found, repeats repeated
        # Each column put in that order at once (itemgetter of the positions: C), then one
        # dict per cell from the columns zipped: no bytecode per cell or field.
        pick = operator.itemgetter(*map(position_of.__getitem__, order))
        ordered = map(pick, columns) if len(order) > 1 else ((pick(column),) for column in columns)
        rows = zip(*ordered, strict=True) if columns else repeat((), len(order))
        dicts = list(map(dict, map(zip, repeat(self.names), rows)))
        nested = _JSONB_COLUMNS.intersection(self.names)
        if nested and len(order) > len(found):
            _own_copies(order, dicts, nested)
        return list(map(self.into, order, dicts))


def int_array_text(ids: list[int]) -> str:
    """``ids`` as PostgreSQL array text, ``{1,-2,3}``: exactly what pg8000 sends for the list.

    pg8000 writes every parameter as text, a list element by element through a singledispatch
    call (~2.6 us per id: 0.13 s per 50,000-id chunk); ``str.join`` of checked ints does it in C.
    """
    return "{" + ",".join(map(str, ids)) + "}"


def _own_copies(order: list[int], dicts: list[dict[str, Any]], names: Iterable[str]) -> None:
    """Give each repeat of an id its own copy of the jsonb values ``names`` (as parsed anew)."""
    seen: set[int] = set()
    for position, cell_id in enumerate(order):
        if cell_id in seen:
            values = dicts[position]
            for name in names:
                values[name] = copy.deepcopy(values[name])
        else:
            seen.add(cell_id)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if on) while a large result is built.

    Each found cell allocates a few containers (the driver's row, decoded JSON, the values
    dict, the record); with the collector on, its repeated passes over them cost as much as
    pg8000's decoding of the rows. Nothing built here is cyclic; the collector resumes after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def in_chunks(values: list[int], size: int) -> Iterator[list[int]]:
    """``values`` in consecutive slices of ``size``."""
    for start in range(0, len(values), size):
        yield values[start : start + size]


def fetch_by_ids(connection: Connection, lookup: Lookup[R], ids: list[int], size: int) -> list[R]:
    """The records of the (checked) ``ids`` found, in their order, ``size`` ids per statement."""
    found: list[R] = []
    with gc_paused():
        for chunk in in_chunks(ids, size):
            found.extend(lookup.fetch(connection, chunk))
    return found


def fetch_values_by_ids(
    connection: Connection, statement: Executable, ids: list[int], chunk_size: int
) -> list[Any]:
    """The one column of ``statement`` run for each chunk of ``ids`` (bound as ``:ids``)."""
    found: list[Any] = []
    with translated_errors(connection=connection):
        for chunk in in_chunks(ids, chunk_size):
            found.extend(connection.execute(statement, {"ids": chunk}).scalars())
    return found


def iter_by_ids(
    connection: Connection, lookup: Lookup[R], source: Iterator[Any], size: int
) -> Iterator[R]:
    """Yield the records of the ids of ``source`` found, checking and fetching chunk by chunk."""
    position = 0
    while chunk := list(islice(source, size)):
        ids = checked_ids(chunk, position)
        position += len(chunk)
        with gc_paused():
            found = lookup.fetch(connection, ids)
        del chunk, ids
        yield from found  # nothing is pending on the connection between two records
