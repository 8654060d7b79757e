"""Cell metadata by id: casdb vs a hand-written unnest query vs the replaced temp-table path.

    python -m benchmarks.bench_lookup --rows 1000000 --ids 100000

N cells are written once (casdb insert_cells) and ANALYZEd; K ids are drawn at random (fixed
seed) from [0, 1.1 N): about 9% do not exist and some repeat. Each method returns the rows of
the ids that exist, in the order of the ids, repeats repeated; the results are checked equal.

* casdb       casdb.queries.cells.get_cell_metadata_by_ids: one int[] parameter per 50,000-id
              chunk, unnest WITH ORDINALITY join, CellMetadata records.
* casdb-iter  casdb.queries.cells.iter_cell_metadata_by_ids, consumed (kept in a list here, to
              compare the rows): 10,000 ids per statement, memory bounded by that chunk.
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
import gc
import os
import random
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy
from sqlalchemy import Connection, Engine

from benchmarks import _common
from casdb.queries import cells
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


@suite.method("hand-written")
def hand_written(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    selected = ", ".join(f"c.{name}" for name in columns)
    sql = (
        f"SELECT {selected}, c.cas_cell_index "
        "FROM unnest(%s::int[]) WITH ORDINALITY AS q(id, ord) "
        "JOIN cells_cellinfo c ON c.cas_cell_index = q.id ORDER BY q.ord"
    )
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    rows: list[Any] = []
    for start in range(0, len(ids), HAND_CHUNK):
        cursor.execute(sql, (ids[start : start + HAND_CHUNK],))
        rows.extend(cursor.fetchall())
    return rows


@suite.method("hand-written-gc-paused")
def hand_written_gc_paused(conn: Connection, ids: list[int], columns: list[str]) -> list[Any]:
    gc.disable()
    try:
        return hand_written(conn, ids, columns)
    finally:
        gc.enable()


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
        print(f"  {name:24s} {seconds:7.3f} s  {len(ids) / seconds:10,.0f} ids/s")
    for slower, faster, digits, note in _RATIOS:
        if slower in best and faster in best:
            label = f"{slower} time / {faster}:"
            print(f"  {label:38s} {best[slower] / best[faster]:.{digits}f}x{note}")


_RATIOS = [  # (numerator, denominator, digits, note): printed when both methods ran
    ("casdb", "hand-written", 2, " (target <= 1.2x)"),
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
