"""Cell metadata by id: casdb vs a hand-written unnest query vs the replaced temp-table path.

    python -m benchmarks.bench_lookup --rows 1000000 --ids 100000

N cells are written once (casdb insert_cells) and ANALYZEd; K ids are drawn at random (fixed
seed) from [0, 1.1 N): about 9% do not exist and some repeat. Each method returns the rows of
the ids that exist, in the order of the ids, repeats repeated; the results are checked equal.

* casdb       casdb.queries.cells.get_cell_metadata_by_ids: one int[] parameter per 50,000-id
              chunk, one ``= ANY(ids)`` index scan serialised as one JSON text of columns, put
              in the order of the ids in Python, CellMetadata records.
* casdb-iter  casdb.queries.cells.iter_cell_metadata_by_ids, consumed (kept in a list here, to
              compare the rows): 20,000 ids per statement, memory bounded by that chunk.
* casdb-plain / casdb-bulk  casdb with every chunk forced onto the plain statement (pg8000
              decodes each field: casdb before issue 12) / onto the JSON one (BULK_MIN_IDS 1).
* casdb-json-rows  casdb's previous bulk path (kept to compare): one json_agg(json_build_array(
              ...) ORDER BY ord)::text over the unnest join, records by C-level maps, the ids
              bound as a list (pg8000 converts it element by element).
* json-agg    candidate: raw pg8000, the chunk serialised by the server as one
              json_agg(json_build_array(...) ORDER BY ord)::text value, json.loads (bare lists).
* json-rows-any  candidate: raw pg8000, = ANY(ids) serialised row by row (json_build_array per
              cell), json.loads, put in the order of the ids in Python (bare lists).
* copy-split  candidate: raw pg8000, COPY (SELECT ...) TO STDOUT of the chunk (ids inlined as an
              int[] literal: COPY takes no parameters), lines and fields split with str.split,
              NULLs, backslash escapes, ints, bools and jsonb (json.loads) decoded (bare lists).
* hand-written raw pg8000, the same SQL typed by hand, per 50,000-id chunk; rows are pg8000's
              lists (no records). Also shown with the garbage collector paused, as casdb does
              while it builds its result, to separate that effect from the query's.
* temp-table  the replaced code's path, per 20,000-id chunk (its cap): CREATE TEMPORARY TABLE,
              INSERT the ids (one multi-row INSERT ... VALUES), SELECT ... JOIN, DROP, commit;
              then put the rows in input order in Python (a dict by cas_cell_index).

Runs are interleaved (one of each per round) and the best of --repeat rounds is kept.
"""

from __future__ import annotations

import argparse
import io
import json
import operator
import os
import random
import time
from collections.abc import Callable
from itertools import repeat
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine

from benchmarks import _common
from casdb.queries import _cell_lookup, cells
from casdb.tables import cells_cellinfo

Method = Callable[[Connection, list[int], list[str]], list[Any]]
suite: _common.Suite[Method] = _common.Suite()

HAND_CHUNK = 50_000
TEMP_TABLE_CHUNK = 20_000
DEFAULT_COLUMNS = "cell_type,cell_type_ontology_term_id,tissue,disease,total_mrna_umis"


def fill(engine: Engine, rows: int) -> None:
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE cells_cellinfo")
        cells.insert_cells(conn, rows=_common.cell_rows(rows))
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
            "VACUUM ANALYZE cells_cellinfo"
        )
    print(f"filled {rows:,} cells in {time.perf_counter() - started:.1f} s", flush=True)


@suite.method("casdb")
def casdb_lookup(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    return cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=columns)


@suite.method("casdb-iter")
def casdb_iter(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    return list(cells.iter_cell_metadata_by_ids(conn, cell_ids=iter(ids), columns=columns))


@suite.method("casdb-plain")
def casdb_plain(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    return _with_bulk_min(10**12, conn, ids, columns)


@suite.method("casdb-bulk")
def casdb_bulk(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    return _with_bulk_min(1, conn, ids, columns)


def _with_bulk_min(bulk_min: int, conn: Connection, ids: list[int], columns: list[str]) -> Any:
    saved = _cell_lookup.BULK_MIN_IDS
    _cell_lookup.BULK_MIN_IDS = bulk_min
    try:
        return cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=columns)
    finally:
        _cell_lookup.BULK_MIN_IDS = saved


# The hand-written join: the ids of a chunk (%s, an int[]) in their order, repeats repeated.
_IN_ID_ORDER = (
    "FROM unnest(%s::int[]) WITH ORDINALITY AS q(id, ord) "
    "JOIN cells_cellinfo c ON c.cas_cell_index = q.id"
)


def _selected(columns: list[str]) -> str:
    return ", ".join(f"c.{name}" for name in columns) + ", c.cas_cell_index"


def _by_chunks(
    conn: Connection, sql: str, ids: list[int], bind: Callable[[list[int]], Any] = list
) -> list[Any]:
    """Every row of ``sql`` run on the driver's cursor for each HAND_CHUNK of ``ids``."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    rows: list[Any] = []
    for chunk in _cell_lookup.in_chunks(ids, HAND_CHUNK):
        cursor.execute(sql, (bind(chunk),))
        rows.extend(cursor.fetchall())
    return rows


@suite.method("casdb-json-rows")
def casdb_json_rows(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    names = tuple(dict.fromkeys(columns))
    with _cell_lookup.gc_paused():
        rows = json_agg(conn, ids, columns)
        values = map(dict, map(zip, repeat(names), rows))
        return list(map(cells.CellMetadata, map(operator.itemgetter(-1), rows), values))


@suite.method("hand-written")
def hand_written(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    sql = f"SELECT {_selected(columns)} {_IN_ID_ORDER} ORDER BY q.ord"
    return _by_chunks(conn, sql, ids)


@suite.method("hand-written-gc-paused")
def hand_written_gc_paused(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    with _cell_lookup.gc_paused():
        return hand_written(conn, ids, columns)


@suite.method("json-agg")
def json_agg(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    rows_json = f"json_agg(json_build_array({_selected(columns)}) ORDER BY q.ord)::text"
    sql = f"SELECT {rows_json} {_IN_ID_ORDER}"
    rows: list[Any] = []
    with _cell_lookup.gc_paused():
        for (text,) in _by_chunks(conn, sql, ids):
            rows.extend(json.loads(text) if text is not None else [])
    return rows


@suite.method("json-rows-any")
def json_rows_any(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    sql = (
        f"SELECT json_agg(json_build_array({_selected(columns)}))::text "
        "FROM cells_cellinfo c WHERE c.cas_cell_index = ANY(%s::int[])"
    )
    rows: list[Any] = []
    with _cell_lookup.gc_paused():
        texts = _by_chunks(conn, sql, ids, bind=_cell_lookup.int_array_text)
        for chunk, (text,) in zip(_cell_lookup.in_chunks(ids, HAND_CHUNK), texts, strict=True):
            found = json.loads(text) if text is not None else []
            row_of = dict(zip(map(operator.itemgetter(-1), found), found, strict=True))
            rows.extend(map(row_of.__getitem__, filter(row_of.__contains__, chunk)))
    return rows


_COPY_ESCAPES = {
    "\\\\": "\\",
    "\\t": "\t",
    "\\n": "\n",
    "\\r": "\r",
    "\\b": "\b",
    "\\f": "\f",
    "\\v": "\v",
}


def _copy_unescape(field: str) -> str:
    if "\\" not in field:
        return field
    out, i = [], 0
    while (j := field.find("\\", i)) >= 0:
        out.append(field[i:j])
        out.append(_COPY_ESCAPES[field[j : j + 2]])
        i = j + 2
    out.append(field[i:])
    return "".join(out)


def _copy_decoder(name: str) -> Callable[[str], Any]:
    kind = cells_cellinfo.c[name].type.__class__.__name__
    if kind == "Integer":
        return lambda field: None if field == "\\N" else int(field)
    if kind == "Boolean":
        return lambda field: None if field == "\\N" else field == "t"
    if kind == "JSONB":
        return lambda field: None if field == "\\N" else json.loads(_copy_unescape(field))
    return lambda field: None if field == "\\N" else _copy_unescape(field)


@suite.method("copy-split")
def copy_split(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    decoders = [_copy_decoder(name) for name in columns]
    decoders.append(int)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    rows: list[Any] = []
    with _cell_lookup.gc_paused():
        for chunk in _cell_lookup.in_chunks(ids, HAND_CHUNK):
            # COPY takes no parameters: the checked ints inlined as an int[] literal.
            join = _IN_ID_ORDER.replace("%s", f"'{_cell_lookup.int_array_text(chunk)}'")
            sql = f"COPY (SELECT {_selected(columns)} {join} ORDER BY q.ord) TO STDOUT"
            stream = io.BytesIO()
            cursor.execute(sql, stream=stream)
            text = stream.getvalue().decode()
            for line in text.split("\n")[:-1]:
                fields = line.split("\t")
                rows.append([decode(field) for decode, field in zip(decoders, fields, strict=True)])
    return rows


@suite.method("temp-table")
def temp_table(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    found: list[dict[str, Any]] = []
    for start in range(0, len(ids), TEMP_TABLE_CHUNK):
        chunk = ids[start : start + TEMP_TABLE_CHUNK]
        with conn.begin():
            temp = sqlalchemy.Table(
                "cells_cellinfotemptable",
                sqlalchemy.MetaData(),
                sqlalchemy.Column("cas_cell_index", sqlalchemy.Integer),
                prefixes=["TEMPORARY"],
            )
            temp.create(conn)
            conn.execute(temp.insert().values([{"cas_cell_index": n} for n in chunk]))
            selected = [cells_cellinfo.c[name] for name in columns]
            statement = sqlalchemy.select(*selected, cells_cellinfo.c.cas_cell_index).join(
                temp, cells_cellinfo.c.cas_cell_index == temp.c.cas_cell_index
            )
            rows = conn.execute(statement).fetchall()
            temp.drop(conn)
        by_id = {row.cas_cell_index: row for row in rows}
        found.extend(dict(by_id[n]._mapping) for n in chunk if n in by_id)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    suite.add_arguments(parser)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument(
        "--columns", default=DEFAULT_COLUMNS, help="comma-separated, or 'all' (every column)"
    )
    parser.add_argument(
        "--no-fill", action="store_true", help="reuse the cells a previous run left in --url"
    )
    args = parser.parse_args()
    columns = (
        list(cells.CELL_COLUMN_NAMES)
        if args.columns == "all"
        else [name.strip() for name in args.columns.split(",")]
    )
    rng = random.Random(20241125)
    ids = [rng.randrange(int(args.rows * 1.1)) for _ in range(args.ids)]
    print(
        f"rows: {args.rows:,}; ids: {len(ids):,} ({len(set(ids)):,} distinct); columns: "
        f"{', '.join(columns)}; best of {args.repeat}; cpus: {os.cpu_count()}",
        flush=True,
    )
    methods = suite.chosen(args)
    times: dict[str, list[float]] = {name: [] for name in methods}
    with _common.database(args.url, keep_cells=args.no_fill) as engine:
        if not args.no_fill:
            fill(engine, args.rows)
        with engine.connect() as conn:
            expected: list[tuple[Any, ...]] | None = None
            for attempt in range(args.repeat):
                for name, method in methods.items():
                    started = time.perf_counter()
                    result = method(conn, ids, columns)
                    times[name].append(time.perf_counter() - started)
                    conn.rollback()
                    if attempt == 0:  # every method returns the same rows in the same order
                        got = [_as_tuple(item, columns) for item in result]
                        expected = expected or got
                        assert got == expected, f"{name} disagrees with {next(iter(methods))}"
                    del result
                if args.repeat <= 10 or attempt == args.repeat - 1:
                    print(
                        f"  round {attempt + 1}: "
                        + ", ".join(f"{name} {values[-1]:.3f} s" for name, values in times.items()),
                        flush=True,
                    )
            assert expected is not None
            found = len(expected)
    best = {name: min(values) for name, values in times.items()}
    print(
        f"\nresults ({len(ids):,} ids -> {found:,} rows, {args.rows:,} cells, best of "
        f"{args.repeat}):"
    )
    for name, seconds in best.items():
        print(f"  {name:24s} {seconds * 1000:10.3f} ms  {len(ids) / seconds:10,.0f} ids/s")
    for slower, faster, digits, note in _RATIOS:
        if slower in best and faster in best:
            label = f"{slower} time / {faster}:"
            print(f"  {label:38s} {best[slower] / best[faster]:.{digits}f}x{note}")


_RATIOS = [  # (numerator, denominator, digits, note): printed when both methods ran
    ("hand-written", "casdb", 2, " = speed-up (target >= 1.5x)"),
    ("hand-written", "casdb-iter", 2, " = speed-up (target >= 1.5x)"),
    ("hand-written", "casdb-plain", 2, " (casdb before issue 12)"),
    ("casdb-plain", "casdb", 2, " (before / after)"),
    ("hand-written", "casdb-json-rows", 2, " (casdb's previous bulk path)"),
    ("casdb-json-rows", "casdb", 2, " (previous bulk path / now)"),
    ("hand-written", "json-agg", 2, " (candidate)"),
    ("hand-written", "json-rows-any", 2, " (candidate)"),
    ("hand-written", "copy-split", 2, " (candidate)"),
    ("casdb-iter", "casdb", 2, ""),
    ("casdb", "hand-written-gc-paused", 2, ""),
    ("temp-table", "casdb", 1, " (target >= 3x)"),
]


def _as_tuple(item: Any, columns: list[str]) -> tuple[Any, ...]:
    if isinstance(item, cells.CellMetadata):
        return (item.cas_cell_index, *item.values.values())
    if isinstance(item, dict):
        return (item["cas_cell_index"], *(item[name] for name in columns))
    return (item[-1], *item[:-1])


if __name__ == "__main__":
    main()
