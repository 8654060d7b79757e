"""The benchmarks run and print their tables (a smoke run on tiny sizes: nothing is timed here).

Each runs as its documented command (``python -m benchmarks.X``) on this module's own database,
and the test reads what it printed: the shape of run_all's one table, and bench_ops' round trip
count, which the latency proxy measures on the wire: one per call for casdb's prepared
operations once a connection has prepared them, against pg8000 ``cursor.execute``'s 2-3.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import Engine

ROOT = Path(__file__).resolve().parent.parent

OPERATIONS = [
    "get_user",
    "get_user_by_email",
    "get_key_for_authentication",
    "log_user_activity",
    "get_user_quota",
    "get_default_model",
    "get_model_by_name",
]
PREPARED = OPERATIONS
"""The operations casdb runs as per-connection prepared statements (issue 12)."""


def _run(module: str, engine: Engine, *options: str) -> str:
    url = engine.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-m", module, "--url", url, *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, f"{module} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def _table(output: str, title: str) -> list[list[str]]:
    """The rows (split on 2+ spaces) of the table printed under the line starting ``title``,
    below its (indented) header line."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(title))
    header = next(i for i in range(start, len(lines)) if lines[i].startswith("  "))
    rows = []
    for line in lines[header + 1 :]:
        if not line.strip():
            break
        rows.append(re.split(r"\s{2,}", line.strip()))
    return rows


@pytest.mark.timeout(600)
def test_bench_ops_counts_one_round_trip_per_prepared_operation(engine: Engine) -> None:
    output = _run(
        "benchmarks.bench_ops",
        engine,
        *("--loops", "3", "--latency-loops", "2", "--repeat", "1", "--rt-calls", "5"),
    )
    header = ["casdb", "raw-execute", "raw-prepared", "psycopg", "psycopg-prepared"]
    trips = {
        row[0]: dict(zip(header, map(float, row[1:]), strict=True))
        for row in _table(output, "round trips per operation")
    }
    assert list(trips) == OPERATIONS
    for operation in PREPARED:
        assert trips[operation]["casdb"] == 1.0, (operation, trips[operation])
    for operation, counted in trips.items():
        assert 2 <= counted["raw-execute"] <= 3, (operation, counted)
        assert counted["raw-prepared"] == 1.0, (operation, counted)
        assert counted["psycopg"] == counted["psycopg-prepared"] == 1.0, (operation, counted)
    for title in ("microseconds per operation, direct", "microseconds per operation, through"):
        rows = _table(output, title)
        assert [row[0] for row in rows] == OPERATIONS
        assert all(len(row) == 6 and all(float(cell) > 0 for cell in row[1:]) for row in rows)


@pytest.mark.timeout(600)
def test_run_all_quick_prints_one_table_of_every_ratio(engine: Engine) -> None:
    output = _run("benchmarks.run_all", engine, "--quick", "--rt-calls", "5", "--markdown")
    rows = _table(output, "casdb / baseline")
    markdown = [line for line in output.splitlines() if line.startswith("| ")]
    assert len(markdown) == len(rows) + 1  # the header, then the same rows
    names = [row[0] for row in rows]
    assert names[0].startswith("ingest ")
    for ids in ("2,000 ids", "10 ids"):
        for width in ("5 columns", "24 columns"):
            assert f"lookup {ids}, {width}: casdb" in names
            assert f"lookup {ids}, {width}: iter" in names
    for operation in OPERATIONS:
        for how in ("direct", "+0.5 ms each way"):
            (row,) = [row for row in rows if row[0] == f"{operation}, {how}"]
            assert row[2] == "pg8000 cursor.execute" and row[5].startswith("<= 0.50x"), row
            assert row[6] in ("yes", "NO"), row
            casdb, execute, psycopg = (int(trips) for trips in row[7].split(" / "))
            assert execute in (2, 3) and psycopg == 1, row
            if operation in PREPARED:
                assert casdb == 1, row
            psycopg_time = float(row[8].split()[0])
            assert float(row[9].removesuffix("x")) == pytest.approx(
                float(row[1].split()[0]) / psycopg_time, rel=0.1
            )
    for row in rows:
        casdb, baseline = (float(row[i].split()[0]) for i in (1, 3))
        ratio = float(row[4].removesuffix("x"))
        assert casdb > 0 and baseline > 0 and ratio == pytest.approx(casdb / baseline, rel=0.1)
