"""Bulk ingest of cell metadata: casdb.insert_cells vs raw COPY vs the replaced INSERT ... VALUES.

    python -m benchmarks.bench_ingest --rows 1000000            # all three, best of 3
    python -m benchmarks.bench_ingest --rows 10000000 --methods casdb --repeat 1   # RSS check

The same deterministic rows (benchmarks/_common.py: cell_row) go through

* casdb     casdb.queries.cells.insert_cells(rows=<generator>): validation, escaping, COPY.
            Runs in a fresh child process per run, so that its peak RSS (ru_maxrss) is its own
            and not the parent's (which holds the raw COPY data and SQLAlchemy's batches).
* raw-copy  pg8000 ``COPY cells_cellinfo (...) FROM STDIN`` of COPY text rendered before the
            clock starts (to a temporary file, streamed in 1 MB chunks): no validation, no
            formatting on the clock. This is the limit a client can reach.
* sa-insert the replaced code's way: SQLAlchemy ``cells_cellinfo.insert().values(batch)``, one
            multi-row INSERT per batch. 10,000 rows x 24 columns is over pg8000's 65,535
            parameters, so the batch is the largest round size that fits: 2,500 rows (60,000
            parameters). At ~2,000 rows/s it is timed on the first --sa-rows rows only.

The table is truncated (and CHECKPOINTed) before each run; each run commits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import Engine

from benchmarks import _common
from casdb.queries import cells
from casdb.tables import cells_cellinfo

Method = Callable[[Engine, argparse.Namespace], float]
suite: _common.Suite[Method] = _common.Suite()

SA_BATCH_ROWS = 2_500
PG8000_MAX_PARAMETERS = 65_535
COLUMNS = [column.name for column in cells_cellinfo.columns]


def reset(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE cells_cellinfo")
    with engine.connect() as conn:
        conn.exec_driver_sql("CHECKPOINT")


def check_count(engine: Engine, rows: int) -> None:
    with engine.connect() as conn:
        found = cells.count_cells(conn)
    if found != rows:
        raise SystemExit(f"expected {rows} rows in cells_cellinfo, found {found}")


# -- raw COPY --------------------------------------------------------------------------------


def _plain_line(row: dict[str, Any]) -> str:
    """COPY text of a benchmark row: its values never need escaping (asserted)."""
    fields = []
    for name in COLUMNS:
        value = row[name]
        if value is None:
            fields.append("\\N")
        elif isinstance(value, bool):
            fields.append("t" if value else "f")
        elif isinstance(value, dict):
            fields.append(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        else:
            fields.append(str(value))
    line = "\t".join(fields)
    assert line.count("\t") == len(COLUMNS) - 1
    assert line.count("\\") == fields.count("\\N") and not any(c in line for c in "\n\r")
    return line


def render_copy_file(rows: int) -> str:
    """Write the COPY text of ``rows`` benchmark rows to a temporary file; return its path."""
    handle = tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".copy", delete=False)
    with handle:
        batch: list[str] = []
        for row in _common.cell_rows(rows):
            batch.append(_plain_line(row))
            if len(batch) == 10_000:
                handle.write("\n".join(batch) + "\n")
                batch = []
        if batch:
            handle.write("\n".join(batch) + "\n")
    return handle.name


def _file_chunks(path: str) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while True:
            lines = handle.readlines(1_000_000)  # whole lines, about 1 MB
            if not lines:
                return
            yield b"".join(lines)


def raw_copy(engine: Engine, path: str) -> None:
    names = ", ".join(COLUMNS)
    with engine.begin() as conn:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(f"COPY cells_cellinfo ({names}) FROM STDIN", stream=_file_chunks(path))


# -- the replaced way: INSERT ... VALUES in batches --------------------------------------------


def sa_insert(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        batch: list[dict[str, Any]] = []
        for row in _common.cell_rows(rows):
            batch.append(row)
            if len(batch) == SA_BATCH_ROWS:
                conn.execute(cells_cellinfo.insert().values(batch))
                batch = []
        if batch:
            conn.execute(cells_cellinfo.insert().values(batch))


# -- casdb, in a child process ---------------------------------------------------------------


def child(url: str, rows: int) -> None:
    """Run one casdb insert_cells of ``rows`` generated rows; print a JSON report."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
    rss_before = _common.peak_rss_mb()
    started = time.perf_counter()
    with engine.begin() as conn:
        written = cells.insert_cells(conn, rows=_common.cell_rows(rows))
    seconds = time.perf_counter() - started
    engine.dispose()
    print(
        json.dumps(
            {
                "rows": written,
                "seconds": seconds,
                "rss_before_mb": rss_before,
                "rss_peak_mb": _common.peak_rss_mb(),
            }
        )
    )


def casdb_in_child(url: str, rows: int) -> dict[str, Any]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_ingest",
            "--child",
            "--url",
            url,
            "--rows",
            str(rows),
        ],
        cwd=_common.ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"casdb child failed:\n{result.stdout}\n{result.stderr}")
    report: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@suite.method("casdb")
def run_casdb(engine: Engine, args: argparse.Namespace) -> float:
    """casdb insert_cells of a generator, a fresh child process per run (its own peak RSS)."""
    print("casdb insert_cells (generator, child process per run):", flush=True)
    url = engine.url.render_as_string(hide_password=False)
    best: dict[str, Any] | None = None
    for attempt in range(args.repeat):
        reset(engine)
        report = casdb_in_child(url, args.rows)
        check_count(engine, args.rows)
        print(
            f"  casdb run {attempt + 1}: {report['seconds']:.2f} s, peak RSS "
            f"{report['rss_peak_mb']:.0f} MB (after imports+connect "
            f"{report['rss_before_mb']:.0f} MB)",
            flush=True,
        )
        if best is None or report["seconds"] < best["seconds"]:
            best = report
    assert best is not None
    args.rss_peak = best["rss_peak_mb"]
    return float(best["seconds"])


@suite.method("raw-copy")
def run_raw_copy(engine: Engine, args: argparse.Namespace) -> float:
    """raw pg8000 COPY FROM STDIN of COPY text rendered before the clock starts."""
    print("raw pg8000 COPY FROM STDIN (pre-rendered text):", flush=True)
    started = time.perf_counter()
    path = render_copy_file(args.rows)
    print(
        f"  rendered {os.path.getsize(path) / 1e6:,.0f} MB in "
        f"{time.perf_counter() - started:.1f} s (not timed)",
        flush=True,
    )
    try:

        def run_raw() -> None:
            raw_copy(engine, path)
            check_count(engine, args.rows)

        return _common.best_of(args.repeat, run_raw, lambda: reset(engine), "raw-copy")
    finally:
        os.unlink(path)


@suite.method("sa-insert")
def run_sa_insert(engine: Engine, args: argparse.Namespace) -> float:
    """the replaced way, SQLAlchemy insert().values(batch), timed on --sa-rows and scaled."""
    params = SA_BATCH_ROWS * len(COLUMNS)
    assert params <= PG8000_MAX_PARAMETERS
    print(
        f"SQLAlchemy insert().values(batch), {SA_BATCH_ROWS:,} rows x "
        f"{len(COLUMNS)} columns = {params:,} parameters per statement (pg8000's "
        f"limit is {PG8000_MAX_PARAMETERS:,}; 10,000-row batches would not run):",
        flush=True,
    )
    sa_rows = min(args.rows, args.sa_rows)
    print(f"  on the first {sa_rows:,} rows (--sa-rows)", flush=True)

    def run_sa() -> None:
        sa_insert(engine, sa_rows)
        check_count(engine, sa_rows)

    seconds = _common.best_of(args.repeat, run_sa, lambda: reset(engine), "sa-insert")
    return seconds * args.rows / sa_rows  # the same rows/s, scaled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    suite.add_arguments(parser)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--sa-rows",
        type=int,
        default=100_000,
        help="rows for sa-insert (default 100,000: at ~2,000 rows/s the full count would take "
        "hours; its rows/s is measured on the first rows, into an emptier table: in its favour)",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.url, args.rows)
        return
    methods = suite.chosen(args)
    rows = args.rows
    print(f"rows: {rows:,}; repeat: best of {args.repeat}; cpus: {os.cpu_count()}", flush=True)
    results: dict[str, float] = {}
    with _common.database(args.url) as engine:
        for name, method in methods.items():
            results[name] = method(engine, args)
        reset(engine)

    print(f"\nresults ({rows:,} rows, best of {args.repeat}):")
    for name, seconds in results.items():
        note = f" (measured on {min(rows, args.sa_rows):,} rows)" if name == "sa-insert" else ""
        print(f"  {name:10s} {rows / seconds:10,.0f} rows/s  {seconds:8.2f} s{note}")
    if "casdb" in results and "raw-copy" in results:
        print(
            f"  casdb / raw COPY rows/s:  {results['raw-copy'] / results['casdb']:.2f}x "
            "(target >= 0.8x)"
        )
    if "casdb" in results and "sa-insert" in results:
        print(f"  casdb / sa-insert rows/s: {results['sa-insert'] / results['casdb']:.1f}x")
    if "casdb" in results:
        print(f"  casdb peak RSS: {args.rss_peak:.0f} MB (target < 300 MB)")


if __name__ == "__main__":
    main()
