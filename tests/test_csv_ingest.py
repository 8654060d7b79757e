"""`casdb cells ingest`: a CSV with awkward values round-trips; a bad line changes nothing."""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import URL

from casdb import migrate
from casdb.cli import main
from casdb.queries import cells

AWKWARD = [
    'say "hi"',
    "a,b,c",
    "line one\nline two",
    "tab\there",
    "back\\slash",
    "\\N",
    "ünïcödé ✓ 细胞",
    "  padded  ",
    "'; drop table cells_cellinfo; --",
    "\r\nCRLF",
]
COLUMNS = [
    "cas_cell_index",
    "cell_type",
    "tissue",
    "donor_id",
    "is_primary_data",
    "total_mrna_umis",
    "obs_metadata_extra",
    "assay_ontology_term_id",
]


@pytest.fixture
def db_url(make_database: Callable[..., URL]) -> str:
    url = make_database()
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
    with engine.begin() as conn:
        migrate.upgrade(conn, "head")
    engine.dispose()
    return url.render_as_string(hide_password=False)


def _expected_row(index: int, rng: random.Random) -> dict[str, Any]:
    return {
        "cas_cell_index": index,
        "cell_type": rng.choice(AWKWARD),
        "tissue": rng.choice([*AWKWARD, None]),
        "donor_id": None if index % 7 == 0 else f"donor-{index % 13}",
        "is_primary_data": rng.choice([True, False, None]),
        "total_mrna_umis": rng.choice([None, 0, 2**31 - 1, rng.randint(0, 50_000)]),
        "obs_metadata_extra": rng.choice([None, {}, {"k": 'v, "quoted"\n', "ключ": [1, 2.5]}]),
        "assay_ontology_term_id": rng.choice([None, "EFO:0009922"]),
    }


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow(
                [
                    ""
                    if row[c] is None
                    else json.dumps(row[c], ensure_ascii=False)
                    if c == "obs_metadata_extra"
                    else str(row[c]).lower()
                    if c == "is_primary_data"
                    else row[c]
                    for c in COLUMNS
                ]
            )


def _cells(db_url: str, ids: list[int]) -> list[cells.CellMetadata]:
    engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.pool.NullPool)
    try:
        with engine.connect() as conn:
            return cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=COLUMNS[1:])
    finally:
        engine.dispose()


def test_awkward_csv_round_trips(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(5)
    rows = [_expected_row(i, rng) for i in range(1, 100_001)]
    path = tmp_path / "cells.csv"
    _write(path, rows)
    code = main(
        [
            "--url",
            db_url,
            "cells",
            "ingest",
            str(path),
            "--ingest-id",
            "ing-csv",
            "--dataset-id",
            "ds",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "ingested 100,000 cells" in captured.out
    assert "rows/s" in captured.err  # the progress line
    back = _cells(db_url, [row["cas_cell_index"] for row in rows])
    assert len(back) == len(rows)
    for row, found in zip(rows, back, strict=True):
        expected = {k: v for k, v in row.items() if k != "cas_cell_index"}
        if expected["obs_metadata_extra"] is None:
            expected["obs_metadata_extra"] = None  # an empty field is NULL, not {}
        if expected["is_primary_data"] is None:
            expected["is_primary_data"] = None
        assert found.cas_cell_index == row["cas_cell_index"]
        assert found.values == expected


@pytest.mark.parametrize(
    "bad,field",
    [
        ({"total_mrna_umis": "many"}, "total_mrna_umis"),
        ({"is_primary_data": "perhaps"}, "is_primary_data"),
        ({"obs_metadata_extra": "{not json"}, "obs_metadata_extra"),
        ({"tissue": "x" * 256}, "tissue"),
        ({"cell_type": ""}, "cell_type"),
    ],
)
def test_a_bad_line_names_line_and_field_and_writes_nothing(
    db_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad: dict[str, str],
    field: str,
) -> None:
    rng = random.Random(9)
    rows = [_expected_row(i, rng) for i in range(1, 30_001)]
    path = tmp_path / "bad.csv"
    _write(path, rows)
    # Replace row 20,000 (0-based 19,999) with the bad value; records may span lines, so the
    # expected line is found by reading the file the way a person would count.
    text_rows = list(csv.reader(open(path, newline="", encoding="utf-8")))
    target = 20_000
    text_rows[target][COLUMNS.index(field)] = bad[field]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(text_rows)
    expected_line = 1 + sum(
        1 + "".join(r).count("\n") + "".join(r).count("\r") - "".join(r).count("\r\n")
        for r in text_rows[:target]
    )
    code = main(
        [
            "--url",
            db_url,
            "cells",
            "ingest",
            str(path),
            "--ingest-id",
            "ing-bad",
            "--dataset-id",
            "ds",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "Traceback" not in err
    assert f"line {expected_line}" in err and field in err, err
    assert _cells(db_url, [1, 2, 29_999]) == []
    engine = sqlalchemy.create_engine(db_url, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        assert cells.count_cells(conn) == 0
        assert cells.list_ingests(conn) == []  # the ingest created for it is gone too
    engine.dispose()


def test_unknown_column_is_refused(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cols.csv"
    path.write_text("cas_cell_index,cell_type,colour\n1,T,red\n", encoding="utf-8")
    code = main(
        ["--url", db_url, "cells", "ingest", str(path), "--ingest-id", "i", "--dataset-id", "d"]
    )
    err = capsys.readouterr().err
    assert code == 1 and "line 1" in err and "'colour'" in err and "tissue" in err
