"""``casdb cells``: bulk ingest of cell metadata from files (casdb.ingest does the work)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from casdb import ingest
from casdb.cli._app import ExitCode, State
from casdb.cli._progress import IngestBar
from casdb.cli._shared import (
    command_options,
    connection,
    describe,
    emit_json,
    emit_table,
    jsonable,
    note,
    out,
    transaction,
)
from casdb.errors import CasdbError
from casdb.queries import cells


@click.group(name="cells")
def cells_group() -> None:
    """Cell metadata: bulk ingest from .h5ad, Parquet, CSV/TSV (gzip too); list ingests."""


@cells_group.command(
    name="ingest",
    epilog="""\b
examples:
  casdb cells ingest pbmc.h5ad --ingest-id pbmc-2024 --dataset-id DS1 --assign-ids
  casdb cells ingest cells.csv.gz --ingest-id ing-7 --dataset-id DS7
  casdb cells ingest features.parquet --features --ingest-id ing-7
  casdb cells ingest cells.tsv --ingest-id ing-7 --dry-run
\b
exit codes: 0 ingested (dry run: no problem), 1 a bad row or a database error (nothing
written), 2 usage or configuration error""",
)
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False), metavar="FILE")
@click.option("--ingest-id", required=True, help="cas_ingest_id to fill (created if new)")
@click.option(
    "--dataset-id",
    default=None,
    help="dataset_id of the ingest: needed to create it; must match an existing one",
)
@click.option("--dataset-version-id", default=None, help="dataset_version_id of a new ingest")
@click.option(
    "--features",
    "features",
    is_flag=True,
    help="a CSV/Parquet FILE holds features (cells_featureinfo), not cells",
)
@click.option(
    "--assign-ids",
    is_flag=True,
    help="take cas_cell_index/cas_feature_index from the table's sequence",
)
@click.option(
    "--dry-run", is_flag=True, help="check every row (ids too), report the bad ones, write nothing"
)
@click.option(
    "--max-problems",
    type=click.IntRange(min=1),
    default=ingest.MAX_PROBLEMS,
    show_default=True,
    help="problems a dry run reports at most",
)
@click.option(
    "--encoding", default="utf-8-sig", show_default=True, help="text encoding of a CSV/TSV file"
)
@click.option("--quiet", "-q", is_flag=True, help="no progress on stderr")
@command_options
def ingest_command(
    state: State,
    file: Path,
    ingest_id: str,
    dataset_id: str | None,
    dataset_version_id: str | None,
    features: bool,
    assign_ids: bool,
    dry_run: bool,
    max_problems: int,
    encoding: str,
    quiet: bool,
    as_json: bool,
) -> int:
    """Stream the rows of FILE into an ingest with COPY, all or nothing.

    .h5ad (AnnData, as CELLxGENE writes it): cells from obs (its index is
    original_cell_id), features from var (its index is original_feature_id); columns that
    are not casdb columns go to obs_metadata_extra / var_metadata_extra.
    .parquet, .csv, .tsv (also .csv.gz, .tsv.gz): a header of cells_cellinfo columns (or
    cells_featureinfo with --features); in CSV an empty field is NULL, is_primary_data takes
    true/false, obs_metadata_extra a JSON document.
    A bad row stops the ingest naming its line (CSV) or row and field; nothing is written.
    """
    try:
        open(file, "rb").close()  # an unreadable file fails before connecting
    except OSError as error:
        raise CasdbError(f"cannot read {file}: {error.strerror or error}") from None
    bar = IngestBar(quiet=quiet or as_json)
    started = time.monotonic()
    with transaction(state) as (engine, conn), bar.shown():
        report = ingest.ingest_file(
            conn,
            path=file,
            cas_ingest_id=ingest_id,
            dataset_id=dataset_id,
            dataset_version_id=dataset_version_id,
            table="features" if features else "cells",
            assign_ids=assign_ids,
            dry_run=dry_run,
            encoding=encoding,
            max_problems=max_problems,
            progress=bar,
        )
    seconds = time.monotonic() - started
    if as_json:
        emit_json(report)
    elif dry_run:
        for problem in report.problems:
            out(str(problem))
        if report.more_problems:
            out(f"... and more (only the first {max_problems} are shown)")
        verdict = f"{len(report.problems)}{'+' if report.more_problems else ''} problem(s)"
        out(
            f"dry run: checked {report.cells:,} cells and {report.features:,} features of "
            f"{file.name}: {verdict if report.problems else 'no problem'}; nothing was written"
        )
    else:
        rows = report.cells + report.features
        what = f"{report.cells:,} cells" + (
            f" and {report.features:,} features" if report.features else ""
        )
        out(
            f"ingested {what} into {ingest_id!r} on {describe(engine)} in {seconds:.1f} s "
            f"({rows / max(seconds, 1e-9):,.0f} rows/s)"
        )
        if report.created_ingest:
            note(f"created ingest {ingest_id!r} of dataset {report.dataset_id!r}")
    return int(ExitCode.FAILURE if report.problems else ExitCode.OK)


@cells_group.command(name="list")
@command_options
def list_(state: State, as_json: bool) -> None:
    """List the ingests with their number of cells."""
    with connection(state) as (_, conn):
        found = [
            (i, cells.count_cells(conn, cas_ingest_id=i.cas_ingest_id))
            for i in cells.list_ingests(conn)
        ]
    emit_table(
        [{**jsonable(record), "cells": count} for record, count in found],
        as_json,
        ["ingest", "dataset", "version", "cells", "ingested"],
        [
            (i.cas_ingest_id, i.dataset_id, i.dataset_version_id, n, i.ingest_timestamp)
            for i, n in found
        ],
    )
