"""Ingest of real files (casdb.ingest and `casdb cells ingest`): .h5ad, Parquet, CSV/TSV, gzip.

Files are built in the tests; every ingest runs against a fresh migrated database.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import URL, Engine

from casdb import ingest
from casdb.cli import main
from casdb.errors import AlreadyExists, InvalidInput
from casdb.queries import cells
from tests.conftest import rolled_back
from tests.strategies import characters, nonempty255


@pytest.fixture
def db(make_database: Callable[..., URL], template_database: str) -> Iterator[Engine]:
    engine = sqlalchemy.create_engine(make_database(template=template_database))
    yield engine
    engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def cli(capsys: pytest.CaptureFixture[str], engine: Engine, *argv: str) -> tuple[int, str, str]:
    code = main(["cells", "ingest", *argv, "--url", _url(engine)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_error(err: str) -> str:
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("casdb: error:")]
    assert len(lines) == 1, err
    return lines[0]


def _cells(engine: Engine, ids: list[int], columns: list[str]) -> list[cells.CellMetadata]:
    with engine.connect() as conn:
        return cells.get_cell_metadata_by_ids(conn, cell_ids=ids, columns=columns)


def _counts(engine: Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return cells.count_cells(conn), len(cells.list_ingests(conn))


CSV = "cas_cell_index,cell_type,tissue,total_mrna_umis,is_primary_data\n" + "".join(
    f"{n},T cell,blood,{n * 10},{'true' if n % 2 else 'false'}\n" for n in range(1, 501)
)


# --- CSV, TSV, gzip, encodings ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["cells.csv.gz", "cells.tsv", "cells.tsv.gz", "gz-no-suffix.csv"])
def test_gzip_and_tsv_round_trip(
    db: Engine, tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    text = CSV.replace(",", "\t") if ".tsv" in name else CSV
    data = text.encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if "gz" in name else data)
    code, out, err = cli(capsys, db, str(path), "--ingest-id", "i1", "--dataset-id", "d1")
    assert code == 0, err
    assert "ingested 500 cells into 'i1'" in out
    assert "rows/s" in err and "ETA" in err  # the plain progress line (not a terminal)
    back = _cells(db, [1, 2, 500], ["cell_type", "tissue", "total_mrna_umis", "is_primary_data"])
    assert [c.values for c in back] == [
        {"cell_type": "T cell", "tissue": "blood", "total_mrna_umis": 10, "is_primary_data": True},
        {"cell_type": "T cell", "tissue": "blood", "total_mrna_umis": 20, "is_primary_data": False},
        {
            "cell_type": "T cell",
            "tissue": "blood",
            "total_mrna_umis": 5000,
            "is_primary_data": False,
        },
    ]


def test_non_utf8_csv_names_the_line_and_the_way_out(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes("cas_cell_index,cell_type\n1,T\n2,cellule épithéliale\n".encode("latin-1"))
    code, _, err = cli(capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d", "-q")
    assert code == 1
    line = one_error(err)
    assert "line 3" in line and "0xe9" in line and "--encoding" in line
    assert _counts(db) == (0, 0)
    code, _, err = cli(
        capsys,
        db,
        str(path),
        "--ingest-id",
        "i",
        "--dataset-id",
        "d",
        "--encoding",
        "latin-1",
        "-q",
    )
    assert code == 0, err
    assert _cells(db, [2], ["cell_type"])[0].values == {"cell_type": "cellule épithéliale"}


def test_a_truncated_gzip_file_is_one_error_line(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(CSV.encode())[:-30])
    code, _, err = cli(capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d", "-q")
    assert code == 1 and "not a readable CSV file" in one_error(err)
    assert _counts(db) == (0, 0)


def test_unreadable_file_fails_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if os.geteuid() != 0:
        path = tmp_path / "secret.csv"
        path.write_text(CSV)
        path.chmod(0)
    else:  # root reads any file; a socket cannot be opened even by root
        path = tmp_path / "socket.csv"
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
    code = main(
        [
            "cells",
            "ingest",
            str(path),
            "--ingest-id",
            "i",
            "--dataset-id",
            "d",
            "--url",
            "postgresql://u:pw@127.0.0.1:1/x",
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    line = one_error(err)
    assert f"cannot read {path}" in line and "cannot connect" not in err
    code = main(
        [
            "cells",
            "ingest",
            str(tmp_path / "missing.csv"),
            "--ingest-id",
            "i",
            "--url",
            "postgresql://u:pw@127.0.0.1:1/x",
        ]
    )
    assert code == 1 and "No such file" in one_error(capsys.readouterr().err)


# --- ids, duplicates, empty files, ingests -------------------------------------------------


def test_duplicate_id_names_its_line_and_value(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "dup.csv"
    rows = [f"{n},T" for n in range(1, 3001)]
    rows[2499] = "17,T"  # line 2501 repeats the id of line 18
    path.write_text("cas_cell_index,cell_type\n" + "\n".join(rows) + "\n")
    code, _, err = cli(capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d", "-q")
    assert code == 1
    line = one_error(err)
    assert "line 2501" in line and "cas_cell_index" in line and "17 repeats line 18" in line
    assert _counts(db) == (0, 0)

    # An id already in the table: the line, the value, and nothing written.
    good = tmp_path / "good.csv"
    good.write_text("cas_cell_index,cell_type\n" + "".join(f"{n},T\n" for n in range(1, 11)))
    assert cli(capsys, db, str(good), "--ingest-id", "i", "--dataset-id", "d", "-q")[0] == 0
    clash = tmp_path / "clash.csv"
    clash.write_text("cas_cell_index,cell_type\n100,T\n101,T\n7,T\n")
    code, _, err = cli(capsys, db, str(clash), "--ingest-id", "j", "--dataset-id", "d", "-q")
    assert code == 1
    line = one_error(err)
    assert "line 4" in line and "7 is already in cells_cellinfo" in line
    assert _counts(db) == (10, 1)


@pytest.mark.parametrize("content", ["cas_cell_index,cell_type\n", "cas_cell_index,cell_type", ""])
def test_a_file_without_rows_is_an_error(
    db: Engine, tmp_path: Path, content: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(content)
    code, _, err = cli(capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d")
    assert code == 1
    line = one_error(err)
    assert ("holds no rows" in line) if content else ("the file is empty" in line)
    assert _counts(db) == (0, 0)  # no empty ingest left behind


def test_dataset_id_must_match_an_existing_ingest(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("cas_cell_index,cell_type\n1,T\n")
    second.write_text("cas_cell_index,cell_type\n2,B\n")
    assert cli(capsys, db, str(first), "--ingest-id", "i", "--dataset-id", "ds-A", "-q")[0] == 0
    code, _, err = cli(capsys, db, str(second), "--ingest-id", "i", "--dataset-id", "ds-B", "-q")
    assert code == 1
    assert "exists with dataset_id 'ds-A', not 'ds-B'" in one_error(err)
    assert _counts(db) == (1, 1)
    # Without --dataset-id the existing ingest is filled; a new one needs it.
    assert cli(capsys, db, str(second), "--ingest-id", "i", "-q")[0] == 0
    code, _, err = cli(capsys, db, str(second), "--ingest-id", "new", "-q")
    assert code == 1 and "give its dataset_id" in one_error(err)
    assert _counts(db) == (2, 1)


def test_assign_ids_and_the_sequence_after_explicit_ids(db: Engine, tmp_path: Path) -> None:
    explicit = tmp_path / "explicit.csv"
    explicit.write_text("cas_cell_index,cell_type\n5,T\n900,T\n40,T\n")
    unnumbered = tmp_path / "unnumbered.csv"
    unnumbered.write_text("cell_type,tissue\n" + "".join(f"T,t{n}\n" for n in range(250)))
    with db.begin() as conn:  # the library, without the CLI
        report = ingest.ingest_file(conn, path=explicit, cas_ingest_id="i", dataset_id="d")
        assert (report.cells, report.created_ingest) == (3, True)
        report = ingest.ingest_file(conn, path=unnumbered, cas_ingest_id="i", assign_ids=True)
        assert report.cells == 250
        with pytest.raises(InvalidInput, match="has a cas_cell_index column"):
            ingest.ingest_file(conn, path=explicit, cas_ingest_id="i", assign_ids=True)
        with pytest.raises(InvalidInput, match="no cas_cell_index column"):
            ingest.ingest_file(conn, path=unnumbered, cas_ingest_id="i")
        # The sequence went past the explicit ids: the assigned ones never collide.
        assert cells.reserve_indexes(conn, table="cells", count=1)[0][0] > 900 + 250
        with conn.begin_nested():
            ids = sorted(
                c.cas_cell_index
                for c in cells.get_cell_metadata_by_ids(
                    conn, cell_ids=range(1, 2000), columns=["tissue"]
                )
                if c.values["tissue"]
            )
        assert len(ids) == 250 and ids[0] > 900


def test_concurrent_reservations_never_share_an_id(db: Engine) -> None:
    got: list[list[range]] = []

    def reserve() -> None:
        with db.connect() as conn:
            for _ in range(20):
                got.append(cells.reserve_indexes(conn, table="cells", count=500))

    threads = [threading.Thread(target=reserve) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [n for ranges in got for run in ranges for n in run]
    assert len(ids) == 4 * 20 * 500 == len(set(ids))


def test_dry_run_reports_every_bad_row_and_writes_nothing(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    lines = [f"{n},T,{n}" for n in range(1, 1001)]
    lines[9] = "10,T,many"
    lines[99] = "100,,7"
    lines[499] = "5,T,1"  # repeats line 6
    lines[899] = "900,T,99999999999"
    path.write_text("cas_cell_index,cell_type,total_mrna_umis\n" + "\n".join(lines) + "\n")
    code, out, err = cli(
        capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d", "--dry-run", "-q"
    )
    assert code == 1, err
    assert out.splitlines()[:4] == [
        "line 11: field total_mrna_umis: expected an integer, got 'many'",
        "line 101: field cell_type: is empty, but the column is NOT NULL",
        "line 501: field cas_cell_index: 5 repeats line 6",
        "line 901: field total_mrna_umis: 99999999999 is out of range (-2147483648 to 2147483647)",
    ]
    assert "dry run: checked 1,000 cells" in out and "4 problem(s)" in out
    assert _counts(db) == (0, 0)
    code, out, _ = cli(
        capsys,
        db,
        str(path),
        "--ingest-id",
        "i",
        "--dataset-id",
        "d",
        "--dry-run",
        "--max-problems",
        "2",
        "-q",
        "--json",
    )
    report = json.loads(out)
    assert code == 1 and len(report["problems"]) == 2 and report["more_problems"]
    path.write_text("cas_cell_index,cell_type\n1,T\n2,T\n")
    code, out, _ = cli(capsys, db, str(path), "--ingest-id", "i", "--dataset-id", "d", "--dry-run")
    assert code == 0 and "no problem; nothing was written" in out
    assert _counts(db) == (0, 0)


# --- AnnData and Parquet ---------------------------------------------------------------------


def _h5ad(path: Path) -> None:
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical(["T cell", "B cell", "T cell"]),
            "cell_type_ontology_term_id": pd.Categorical(
                ["CL:0000084", "CL:0000236", "CL:0000084"]
            ),
            "assay": pd.Categorical(["10x 3' v3"] * 3),
            "tissue": pd.Categorical(["blood", "blood", None]),
            "is_primary_data": [True, False, True],
            "donor_id": pd.Categorical(["d1", "d2", "d1"]),
            "total_mrna_umis": [1200.0, np.nan, 300.0],
            "tissue_type": pd.Categorical(["tissue"] * 3),
            "n_genes": np.array([10, 20, 30], dtype=np.int64),
            "pct_mito": [0.1, np.nan, 0.25],
        },
        index=pd.Index(["AAAC-1", "AAAG-1", "AAAT-1"]),
    )
    var = pd.DataFrame(
        {
            "feature_name": pd.Categorical(["CD3E", "MS4A1"]),
            "feature_biotype": pd.Categorical(["gene", "gene"]),
            "feature_is_filtered": [False, True],
            "feature_reference": pd.Categorical(["NCBITaxon:9606"] * 2),
            "feature_length": np.array([1000, 2000], dtype=np.int32),
        },
        index=pd.Index(["ENSG00000198851", "ENSG00000156738"]),
    )
    data = anndata.AnnData(
        X=np.zeros((3, 2), dtype=np.float32),
        obs=obs,
        var=var,
        uns={"title": "tiny atlas", "schema_version": "5.0.0"},
    )
    data.write_h5ad(path)


def test_h5ad_cells_from_obs_features_from_var(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "tiny.h5ad"
    _h5ad(path)
    code, _, err = cli(
        capsys,
        db,
        str(path),
        "--ingest-id",
        "h5",
        "--dataset-id",
        "d",
        "--dry-run",
        "--assign-ids",
        "-q",
    )
    assert code == 0, err
    code, out, err = cli(
        capsys, db, str(path), "--ingest-id", "h5", "--dataset-id", "d", "--assign-ids"
    )
    assert code == 0, err
    assert "ingested 3 cells and 2 features" in out
    with db.connect() as conn:
        features = cells.list_features_for_ingest(conn, cas_ingest_id="h5")
        ingest_record = cells.get_ingest(conn, cas_ingest_id="h5")
        found = cells.get_cell_metadata_by_ids(
            conn,
            cell_ids=range(1, 100),
            columns=[
                "original_cell_id",
                "cell_type",
                "cell_type_ontology_term_id",
                "tissue",
                "is_primary_data",
                "donor_id",
                "total_mrna_umis",
                "obs_metadata_extra",
            ],
        )
    assert ingest_record.uns_metadata == {"title": "tiny atlas", "schema_version": "5.0.0"}
    assert [c.values for c in found] == [
        {
            "original_cell_id": "AAAC-1",
            "cell_type": "T cell",
            "cell_type_ontology_term_id": "CL:0000084",
            "tissue": "blood",
            "is_primary_data": True,
            "donor_id": "d1",
            "total_mrna_umis": 1200,
            "obs_metadata_extra": {"tissue_type": "tissue", "n_genes": 10, "pct_mito": 0.1},
        },
        {
            "original_cell_id": "AAAG-1",
            "cell_type": "B cell",
            "cell_type_ontology_term_id": "CL:0000236",
            "tissue": "blood",
            "is_primary_data": False,
            "donor_id": "d2",
            "total_mrna_umis": None,
            "obs_metadata_extra": {"tissue_type": "tissue", "n_genes": 20, "pct_mito": None},
        },
        {
            "original_cell_id": "AAAT-1",
            "cell_type": "T cell",
            "cell_type_ontology_term_id": "CL:0000084",
            "tissue": None,
            "is_primary_data": True,
            "donor_id": "d1",
            "total_mrna_umis": 300,
            "obs_metadata_extra": {"tissue_type": "tissue", "n_genes": 30, "pct_mito": 0.25},
        },
    ]
    assert [
        (
            f.original_feature_id,
            f.feature_name,
            f.feature_biotype,
            f.feature_is_filtered,
            f.feature_reference,
            f.var_metadata_extra,
        )
        for f in features
    ] == [
        ("ENSG00000198851", "CD3E", "gene", False, "NCBITaxon:9606", {"feature_length": 1000}),
        ("ENSG00000156738", "MS4A1", "gene", True, "NCBITaxon:9606", {"feature_length": 2000}),
    ]
    code, _, err = cli(capsys, db, str(path), "--ingest-id", "h5", "-q")
    assert code == 1 and "--assign-ids" in one_error(err)


def test_h5ad_without_a_required_column(db: Engine, tmp_path: Path) -> None:
    path = tmp_path / "no-type.h5ad"
    data = anndata.AnnData(
        X=np.zeros((2, 1), dtype=np.float32),
        obs=pd.DataFrame({"tissue": ["a", "b"]}, index=["c1", "c2"]),
        var=pd.DataFrame(index=["g1"]),
    )
    data.write_h5ad(path)
    with db.begin() as conn, pytest.raises(InvalidInput, match="cell_type"):
        ingest.ingest_file(conn, path=path, cas_ingest_id="x", dataset_id="d", assign_ids=True)


def test_parquet_round_trip_with_json_output(
    db: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cells.parquet"
    pq.write_table(
        pa.table(
            {
                "cas_cell_index": pa.array([7, 8, 9], pa.int64()),
                "cell_type": ["T", "B", None],
                "total_mrna_umis": pa.array([1, None, 3], pa.int32()),
                "is_primary_data": [True, None, False],
                "obs_metadata_extra": ['{"k": 1}', None, "{}"],
            }
        ),
        path,
    )
    code, out, err = cli(capsys, db, str(path), "--ingest-id", "pq", "--dataset-id", "d", "--json")
    assert code == 1 and "row 3: field cell_type: is empty" in one_error(err)
    assert out == ""
    table = pq.read_table(path).to_pandas()
    table.loc[2, "cell_type"] = "NK"
    table.to_parquet(path)
    code, out, err = cli(capsys, db, str(path), "--ingest-id", "pq", "--dataset-id", "d", "--json")
    assert code == 0, err
    assert json.loads(out) == {
        "cas_ingest_id": "pq",
        "dataset_id": "d",
        "created_ingest": True,
        "cells": 3,
        "features": 0,
        "dry_run": False,
        "problems": [],
        "more_problems": False,
    }
    values = [
        c.values
        for c in _cells(
            db, [7, 8, 9], ["cell_type", "total_mrna_umis", "is_primary_data", "obs_metadata_extra"]
        )
    ]
    assert values == [
        {
            "cell_type": "T",
            "total_mrna_umis": 1,
            "is_primary_data": True,
            "obs_metadata_extra": {"k": 1},
        },
        {
            "cell_type": "B",
            "total_mrna_umis": None,
            "is_primary_data": None,
            "obs_metadata_extra": None,
        },
        {
            "cell_type": "NK",
            "total_mrna_umis": 3,
            "is_primary_data": False,
            "obs_metadata_extra": {},
        },
    ]


def test_features_from_csv_and_unknown_formats(db: Engine, tmp_path: Path) -> None:
    path = tmp_path / "features.csv"
    path.write_text(
        "cas_feature_index,original_feature_id,feature_name,var_metadata_extra\n"
        '3,ENSG1,A,"{""x"": 1}"\n4,ENSG2,B,\n'
    )
    with db.begin() as conn:
        cells.create_ingest(conn, cas_ingest_id="f", dataset_id="d")
        report = ingest.ingest_file(conn, path=path, cas_ingest_id="f", table="features")
        assert report.features == 2
        assert [
            (f.cas_feature_index, f.var_metadata_extra)
            for f in cells.list_features_for_ingest(conn, cas_ingest_id="f")
        ] == [(3, {"x": 1}), (4, {})]
        path.rename(tmp_path / "features.xlsx")
        with pytest.raises(InvalidInput, match="unknown file type"):
            ingest.ingest_file(conn, path=tmp_path / "features.xlsx", cas_ingest_id="f")
        with pytest.raises(AlreadyExists, match="line 2: field cas_feature_index: 3 is already"):
            (tmp_path / "again.csv").write_text(
                "cas_feature_index,original_feature_id,feature_name\n3,E,A\n"
            )
            ingest.ingest_file(
                conn, path=tmp_path / "again.csv", cas_ingest_id="f", table="features"
            )


# --- round trips (Hypothesis) ------------------------------------------------------------------

_COLUMNS = [
    "cell_type",
    "tissue",
    "donor_id",
    "assay_ontology_term_id",
    "is_primary_data",
    "total_mrna_umis",
    "obs_metadata_extra",
]
_json = st.dictionaries(
    st.text(characters, max_size=5),
    st.integers(-(10**6), 10**6) | st.text(characters, max_size=8),
    max_size=3,
)
_cell = st.fixed_dictionaries(
    {
        "cell_type": nonempty255,
        "tissue": st.none() | nonempty255,
        "donor_id": st.none() | nonempty255,
        "assay_ontology_term_id": st.none() | nonempty255,
        "is_primary_data": st.none() | st.booleans(),
        "total_mrna_umis": st.none() | st.integers(-(2**31), 2**31 - 1),
        "obs_metadata_extra": st.none() | _json,
    }
)


def _write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str) -> None:
    columns = ["cas_cell_index", *_COLUMNS]
    with (
        gzip.open(path, "wt", newline="", encoding="utf-8")
        if path.suffix == ".gz"
        else open(path, "w", newline="", encoding="utf-8") as handle
    ):
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(columns)
        for index, row in enumerate(rows, start=1):
            writer.writerow(
                [index]
                + [
                    ""
                    if value is None
                    else json.dumps(value, ensure_ascii=False)
                    if name == "obs_metadata_extra"
                    else str(value).lower()
                    if name == "is_primary_data"
                    else value
                    for name, value in ((name, row[name]) for name in _COLUMNS)
                ]
            )


def _write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: dict[str, Any] = {"cas_cell_index": pa.array(range(1, len(rows) + 1), pa.int32())}
    for name in _COLUMNS:
        values = [row[name] for row in rows]
        if name == "obs_metadata_extra":
            values = [None if v is None else json.dumps(v) for v in values]
        columns[name] = pa.array(values, pa.int32() if name == "total_mrna_umis" else None)
    pq.write_table(pa.table(columns), path)


@settings(max_examples=max(10, settings.default.max_examples // 2))
@given(
    rows=st.lists(_cell, min_size=1, max_size=30),
    kind=st.sampled_from(["x.csv", "x.tsv", "x.csv.gz", "x.parquet"]),
)
def test_files_round_trip(
    engine: Engine, tmp_path_factory: pytest.TempPathFactory, rows: list[dict[str, Any]], kind: str
) -> None:
    path = tmp_path_factory.mktemp("round") / kind
    if kind.endswith(".parquet"):
        _write_parquet(path, rows)
    else:
        _write_csv(path, rows, "\t" if ".tsv" in kind else ",")
    with rolled_back(engine) as conn:  # each example in its own rolled-back transaction
        cells.create_ingest(conn, cas_ingest_id="rt", dataset_id="d")
        report = ingest.ingest_file(conn, path=path, cas_ingest_id="rt", dry_run=True)
        assert report.problems == () and report.cells == len(rows)
        assert cells.count_cells(conn) == 0
        assert ingest.ingest_file(conn, path=path, cas_ingest_id="rt").cells == len(rows)
        found = cells.get_cell_metadata_by_ids(
            conn, cell_ids=range(1, len(rows) + 1), columns=_COLUMNS
        )
        assert [c.values for c in found] == rows
        # The sequence was moved past the file's ids.
        assert cells.reserve_indexes(conn, table="cells", count=1)[0][0] > len(rows)
