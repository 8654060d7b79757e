"""Every figure of the README's performance section, side by side in one run, in one table.

    python -m benchmarks.run_all              # ~6-10 minutes on 2 cores
    python -m benchmarks.run_all --quick      # small sizes: a smoke run of a few seconds

(``PYTHONPATH=. python benchmarks/run_all.py`` works too: the benchmarks are a package run from
the repository root, and nothing edits ``sys.path``.)

One database (a throwaway embedded PostgreSQL, or ``--url``), in this order:

* ingest      bench_ingest's casdb ``insert_cells`` (a child process per run) vs raw pg8000
              COPY of pre-rendered text, ``--ingest-rows`` rows.
* lookups     bench_lookup's methods on the ``--cells`` cells the ingest left (the same
              deterministic rows; filled anew when the sizes differ): ``--ids`` ids and 10 ids,
              5 columns and all 24; casdb ``get_cell_metadata_by_ids`` and
              ``iter_cell_metadata_by_ids`` vs the hand-written raw pg8000 query, and the
              replaced temp-table path vs casdb.
* small ops   bench_ops: the seven hot operations, casdb vs raw pg8000 ``cursor.execute`` and
              vs psycopg 3, directly and through the latency proxy, with round trips counted.

Then ONE table: name, casdb's time, the baseline's, casdb / baseline (a time ratio: below 1 is
casdb faster), the target and whether it is met. Each section can be left out (``--only``).
"""

from __future__ import annotations

import argparse
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from benchmarks import _common, bench_ingest, bench_lookup, bench_ops
from casdb.queries import cells

SECTIONS = ("ingest", "lookups", "ops")
SMALL_IDS = 10


@dataclass
class Ratio:
    """One line of the table: casdb's time and a baseline's, and the target for their ratio."""

    name: str
    casdb: float  # seconds (per call for the small operations and the small lookups)
    baseline: float
    baseline_name: str
    target: float | None  # the largest casdb / baseline time ratio that meets it
    target_note: str = ""
    unit: str = "ms"  # how the times are printed: "s", "ms" or "µs"
    round_trips: str = ""  # small operations: per call, casdb / the baseline / psycopg
    psycopg: float | None = None  # small operations: psycopg 3's time, what users would pick

    @property
    def psycopg_ratio(self) -> str:
        return "" if self.psycopg is None else f"{self.casdb / self.psycopg:.2f}x"

    @property
    def ratio(self) -> float:
        return self.casdb / self.baseline

    @property
    def met(self) -> str:
        if self.target is None:
            return ""
        return "yes" if self.ratio <= self.target else "NO"


@dataclass
class Sizes:
    ingest_rows: int
    cells: int
    ids: int
    small_loops: int
    ops_loops: int
    latency_loops: int
    repeat: int


def sizes(args: argparse.Namespace) -> Sizes:
    if args.quick:
        return Sizes(4_000, 4_000, 2_000, 20, 40, 20, 1)
    return Sizes(
        args.ingest_rows,
        args.cells,
        args.ids,
        args.small_loops,
        args.loops,
        args.latency_loops,
        args.repeat,
    )


def run_ingest(engine: Engine, size: Sizes) -> list[Ratio]:
    """bench_ingest's raw COPY and casdb (child process) runs, alternating, best of each.

    Alternating (where bench_ingest runs all of one method, then the other) keeps a change in
    the shared machine's load from landing on one side only. Leaves the last run's rows.
    """
    rows = size.ingest_rows
    print(
        f"\n== ingest: {rows:,} rows, raw COPY and casdb alternating, best of {size.repeat}",
        flush=True,
    )
    path = bench_ingest.render_copy_file(rows)  # raw COPY's text, rendered before its clock
    url = engine.url.render_as_string(hide_password=False)
    raw, casdb = float("inf"), float("inf")
    try:
        for attempt in range(size.repeat):
            bench_ingest.reset(engine)
            started = time.perf_counter()
            bench_ingest.raw_copy(engine, path)
            raw = min(raw, seconds := time.perf_counter() - started)
            bench_ingest.check_count(engine, rows)
            bench_ingest.reset(engine)
            report = bench_ingest.casdb_in_child(url, rows)  # its clock: begin to commit
            casdb = min(casdb, report["seconds"])
            bench_ingest.check_count(engine, rows)
            print(
                f"  run {attempt + 1}: raw COPY {seconds:.2f} s, casdb {report['seconds']:.2f} s "
                f"(peak RSS {report['rss_peak_mb']:.0f} MB)",
                flush=True,
            )
    finally:
        os.unlink(path)
    return [
        Ratio(f"ingest {rows:,} rows", casdb, raw, "raw pg8000 COPY", 1.25, "(>= 0.8x rows/s)", "s")
    ]


def run_lookups(engine: Engine, size: Sizes, *, filled: bool) -> list[Ratio]:
    """bench_lookup's methods at --ids and at 10 ids, 5 columns and all 24."""
    if filled:
        with engine.connect() as conn:
            filled = cells.count_cells(conn) == size.cells
    if filled:
        _common.analyze_cells(engine)
        print(f"\n== lookups on the {size.cells:,} cells the ingest left", flush=True)
    else:
        print(f"\n== lookups: filling {size.cells:,} cells", flush=True)
        bench_lookup.fill(engine, size.cells)
    rng = random.Random(20241125)  # bench_lookup's seed and draw: ids in [0, 1.1 N)
    many = [rng.randrange(int(size.cells * 1.1)) for _ in range(size.ids)]
    few = [rng.randrange(size.cells) for _ in range(SMALL_IDS)]
    widths = {
        "5 columns": bench_lookup.DEFAULT_COLUMNS.split(","),
        "24 columns": list(cells.CELL_COLUMN_NAMES),
    }
    methods = bench_lookup.suite.methods
    # (what, casdb's method, the baseline's, its label, the target and its note)
    large = [
        ("casdb", "casdb", "hand-written", "hand-written raw pg8000", 0.67, "(1.5x faster)"),
        ("iter", "casdb-iter", "hand-written", "hand-written raw pg8000", 0.67, "(1.5x faster)"),
        ("casdb vs temp table", "casdb", "temp-table", "replaced temp-table path", 0.33, "(3x)"),
    ]
    # At 10 ids the target is "as fast as before the bulk path": casdb-plain forces every
    # chunk onto the plain statement (casdb before issue 12); the hand-written query is shown.
    small = [
        ("casdb", "casdb", "casdb-plain", "casdb, plain statement", 1.05, "(as fast as before)"),
        ("iter", "casdb-iter", "casdb-plain", "casdb, plain statement", 1.05, "(as before)"),
        ("casdb vs hand-written", "casdb", "hand-written", "hand-written raw pg8000", None, ""),
    ]
    found: list[Ratio] = []
    with engine.connect() as conn:
        for ids, loops, rows, unit in (
            (many, 1, large, "ms"),
            (few, size.small_loops, small, "µs"),
        ):
            kept = [row for row in rows if {row[1], row[2]} <= set(methods)]  # if one goes
            names = list(dict.fromkeys(name for row in kept for name in row[1:3]))
            for width, columns in widths.items():
                label = f"lookup {len(ids):,} ids, {width}"
                print(f"  {label}: {', '.join(names)}", flush=True)
                best = _common.interleaved(
                    _lookup_runs(methods, names, conn, ids, columns),
                    # small lookups are cheap, and their noise as large as the effect sought
                    repeat=size.repeat if ids is many else max(size.repeat, 5),
                    loops=loops,
                    after=conn.rollback,
                    check=_same_rows(columns),
                )
                for what, mine, theirs, their_label, target, note in kept:
                    found.append(
                        Ratio(
                            f"{label}: {what}",
                            best[mine],
                            best[theirs],
                            their_label,
                            target,
                            note,
                            unit,
                        )
                    )
    return found


def _lookup_runs(
    methods: dict[str, Any], names: list[str], conn: Any, ids: list[int], columns: list[str]
) -> dict[str, Callable[[], Any]]:
    return {name: (lambda m=methods[name]: m(conn, ids, columns)) for name in names}


def _same_rows(columns: list[str]) -> Callable[[str, Any], None]:
    expected: list[Any] = []

    def check(name: str, result: Any) -> None:
        got = [bench_lookup._as_tuple(item, columns) for item in result]
        if not expected:
            expected.extend(got)
        assert got == expected, f"lookup: {name} disagrees with the first method"

    return check


def run_ops(engine: Engine, size: Sizes, args: argparse.Namespace) -> list[Ratio]:
    print("\n== small operations (bench_ops)", flush=True)
    results = bench_ops.measure(
        engine,
        loops=size.ops_loops,
        latency_loops=size.latency_loops,
        repeat=size.repeat,
        latency_ms=args.latency_ms,
    )
    bench_ops.print_tables(results)
    found: list[Ratio] = []
    for mode in bench_ops.MODES:
        how = "direct" if mode == "direct" else f"+{args.latency_ms:g} ms each way"
        for operation in results.operations:
            seconds = {name: results.seconds[(mode, operation, name)] for name in results.methods}
            trips = " / ".join(
                f"{results.round_trips[(operation, name)]:.0f}"
                for name in ("casdb", "raw-execute", "psycopg")
                if name in results.methods
            )
            if "casdb" in seconds and "raw-execute" in seconds:
                found.append(
                    Ratio(
                        f"{operation}, {how}",
                        seconds["casdb"],
                        seconds["raw-execute"],
                        "pg8000 cursor.execute",
                        bench_ops.TARGET_RATIO,
                        unit="µs",
                        round_trips=trips,
                        psycopg=seconds.get("psycopg"),
                    )
                )
    return found


_COLUMNS = (
    "name",
    "casdb",
    "baseline",
    "time",
    "casdb / baseline",
    "target",
    "met?",
    "round trips",
    "psycopg 3",
    "casdb / psycopg",
)
_RIGHT = frozenset({"casdb", "time", "casdb / baseline", "psycopg 3", "casdb / psycopg"})


def _cells(ratio: Ratio, *, markdown: bool) -> list[str]:
    """One row of the table: the text table's target carries its note, Markdown's is bold."""
    target = "" if ratio.target is None else f"<= {ratio.target:.2f}x"
    if target and ratio.target_note and not markdown:
        target += f" {ratio.target_note}"
    times = f"{ratio.ratio:.2f}x"
    return [
        ratio.name,
        _time(ratio.casdb, ratio.unit),
        ratio.baseline_name,
        _time(ratio.baseline, ratio.unit),
        f"**{times}**" if markdown else times,
        target,
        ratio.met,
        ratio.round_trips,
        "" if ratio.psycopg is None else _time(ratio.psycopg, ratio.unit),
        ratio.psycopg_ratio,
    ]


def print_table(ratios: list[Ratio], *, markdown: bool = False) -> None:
    """The one table (and, with ``markdown``, the same as the README's Markdown table)."""
    print(
        "\ncasdb / baseline (time ratios measured side by side in this run; below 1 is faster;"
        "\nround trips per call: casdb / the baseline / psycopg 3):"
    )
    rows = [_cells(ratio, markdown=False) for ratio in ratios]
    widths = [max(map(len, column)) for column in zip(_COLUMNS, *rows, strict=True)]
    for row in [list(_COLUMNS), *rows]:
        aligned = (
            cell.rjust(width) if name in _RIGHT else cell.ljust(width)
            for name, cell, width in zip(_COLUMNS, row, widths, strict=True)
        )
        print("  " + "  ".join(aligned).rstrip())
    if markdown:
        print("\n| " + " | ".join(_COLUMNS) + " |")
        print("|" + "---|" * len(_COLUMNS))
        for ratio in ratios:
            print("| " + " | ".join(_cells(ratio, markdown=True)) + " |")


def _time(seconds: float, unit: str) -> str:
    if unit == "s":
        return f"{seconds:.2f} s"
    if unit == "ms":
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds * 1e6:.0f} µs"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    _common.add_common_arguments(parser)
    bench_ops.add_arguments(parser)
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections")
    parser.add_argument("--ingest-rows", type=int, default=1_000_000)
    parser.add_argument("--cells", type=int, default=1_000_000, help="cells the lookups read")
    parser.add_argument("--ids", type=int, default=100_000, help="ids of the large lookups")
    parser.add_argument(
        "--small-loops", type=int, default=300, help="calls per round of the 10-id lookups"
    )
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args(argv)
    wanted = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := sorted(set(wanted) - set(SECTIONS)):
        raise SystemExit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    size = sizes(args)
    started = time.perf_counter()
    print(f"run_all{' --quick' if args.quick else ''}: {size}; cpus: {os.cpu_count()}", flush=True)
    ratios: list[Ratio] = []
    with _common.database(args.url) as engine:
        if "ingest" in wanted:
            ratios += run_ingest(engine, size)
        if "lookups" in wanted:
            filled = "ingest" in wanted and size.ingest_rows == size.cells
            ratios += run_lookups(engine, size, filled=filled)
        if "ops" in wanted:
            ratios += run_ops(engine, size, args)
        with engine.begin() as conn:
            conn.exec_driver_sql("TRUNCATE cells_cellinfo")
    print_table(ratios, markdown=args.markdown)
    print(f"\n(all figures in {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
