"""Bulk ingest of cell metadata from files: AnnData ``.h5ad``, Parquet, CSV/TSV (gzip too).

:func:`ingest_file` streams a file's rows into an ingest with COPY (``casdb.queries.cells``),
all or nothing. Values are converted and checked by the type of their column in
``casdb.tables`` (int32, boolean, varchar(n), jsonb, NOT NULL), so every format is read the
same way and a bad value names its line (CSV) or row (other formats) and its field.

* ``.h5ad`` (the ``anndata`` extra): cells from ``obs`` (its index is original_cell_id),
  features from ``var`` (its index is original_feature_id), categorical columns as CELLxGENE
  writes them; columns that are not casdb columns go to obs_metadata_extra /
  var_metadata_extra.
* ``.parquet`` (the ``parquet`` extra, pyarrow) and ``.csv``/``.tsv`` (gzip-compressed too):
  one table, cells by default; the header names columns of cells_cellinfo (or of
  cells_featureinfo with ``table="features"``). In CSV an empty field is NULL.

Ids: the file's cas_cell_index/cas_feature_index, after which the column's sequence is
advanced past the largest; or, with ``assign_ids``, ids reserved from the sequence in one
statement.
"""

from __future__ import annotations

import array
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import attrs
from sqlalchemy import Connection

from casdb._ingest_files import FORMATS, Reader, open_file
from casdb._ingest_values import TableName, to_int32
from casdb.errors import AlreadyExists, InvalidInput, NotFound
from casdb.queries import cells

__all__ = [
    "FORMATS",
    "IngestProgress",
    "IngestReport",
    "Problem",
    "TableName",
    "ingest_file",
    "open_file",
]

MAX_PROBLEMS: Final = 100
PROGRESS_EVERY_ROWS: Final = 2_000


# --- records -------------------------------------------------------------------------------


@attrs.frozen
class IngestProgress:
    """Where an ingest is: rows of ``table`` done, of ``total_rows`` when known; bytes of the
    file read, of ``total_bytes`` when the format streams by bytes (CSV/TSV)."""

    table: TableName
    rows: int
    total_rows: int | None
    bytes_read: int
    total_bytes: int | None


@attrs.frozen
class Problem:
    """One bad row: where (``line N`` or ``row N``), the field (if one), what is wrong."""

    where: str
    field: str | None
    message: str

    def __str__(self) -> str:
        field = f"field {self.field}: " if self.field else ""
        return f"{self.where}: {field}{self.message}"


@attrs.frozen
class IngestReport:
    """What :func:`ingest_file` did (or, with ``dry_run``, would do and found wrong)."""

    cas_ingest_id: str
    dataset_id: str
    created_ingest: bool
    cells: int
    features: int
    dry_run: bool
    problems: tuple[Problem, ...] = ()
    more_problems: bool = False


ProgressCallback = Callable[[IngestProgress], None]


# --- the ingest ----------------------------------------------------------------------------


def _ensure_ingest(
    connection: Connection, cas_ingest_id: str, dataset_id: str | None
) -> tuple[str, bool]:
    try:
        existing = cells.get_ingest(connection, cas_ingest_id=cas_ingest_id)
    except NotFound:
        if dataset_id is None:
            raise InvalidInput(
                f"ingest {cas_ingest_id!r} does not exist: give its dataset_id to create it"[:300]
            ) from None
        return dataset_id, True
    if dataset_id is not None and existing.dataset_id != dataset_id:
        raise InvalidInput(
            f"ingest {cas_ingest_id!r} exists with dataset_id {existing.dataset_id!r}, "
            f"not {dataset_id!r}: use another cas_ingest_id or its dataset_id"[:400]
        )
    return existing.dataset_id, False


@attrs.define
class _Run:
    """One pass over a reader: converts rows, reports progress, collects problems."""

    reader: Reader
    ingest_id: str
    progress: ProgressCallback | None
    max_problems: int
    problems: list[Problem] = attrs.field(factory=list)
    more: bool = False
    count: int = 0
    max_id: int = 0

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(
                IngestProgress(
                    table=self.reader.layout.name,
                    rows=self.count,
                    total_rows=self.reader.total_rows,
                    bytes_read=self.reader.bytes_read(),
                    total_bytes=self.reader.total_bytes,
                )
            )

    def rows(self, ids: Iterator[int] | None, *, collect: bool) -> Iterator[dict[str, Any]]:
        layout = self.reader.layout
        for index, raw in enumerate(self.reader.rows()):
            if ids is not None:
                raw[layout.id_column] = next(ids)
            row, errors = layout.convert(raw, self.ingest_id)
            self.count = index + 1
            if errors:
                where = self.reader.where(index)
                if not collect:
                    field, message = errors[0]
                    raise InvalidInput(f"{where}: field {field}: {message}", field=field)
                for field, message in errors:
                    if len(self.problems) < self.max_problems:
                        self.problems.append(Problem(where, field, message))
                    else:
                        self.more = True
            identifier = row.get(layout.id_column)
            if isinstance(identifier, int) and identifier > self.max_id:
                self.max_id = identifier
            if self.count % PROGRESS_EVERY_ROWS == 0:
                self._report()
            yield row
        self._report()


def _ids_with_lines(reader: Reader) -> Iterator[tuple[int, int]]:
    """(row index, id) for every row whose id converts (for locating duplicates)."""
    name = reader.layout.id_column
    for index, raw in enumerate(reader.rows()):
        try:
            yield index, to_int32(raw.get(name))
        except ValueError:
            continue


def _duplicate_problems(connection: Connection, reader: Reader, limit: int) -> list[Problem]:
    """Rows whose id repeats an earlier row of the file or is in the table already."""
    name, table = reader.layout.id_column, reader.layout.name
    indexes, ids = array.array("q"), array.array("q")
    for index, identifier in _ids_with_lines(reader):
        indexes.append(index)
        ids.append(identifier)
    first: dict[int, int] = {}
    problems: list[Problem] = []
    order = sorted(range(len(ids)), key=ids.__getitem__)  # stable: earlier rows first
    for position, at in enumerate(order):
        if position and ids[order[position - 1]] == ids[at]:
            original = first.setdefault(ids[at], indexes[order[position - 1]])
            problems.append(
                Problem(
                    reader.where(indexes[at]), name, f"{ids[at]} repeats {reader.where(original)}"
                )
            )
    existing = set(cells.find_existing_indexes(connection, table=table, ids=ids))
    if existing:
        for index, identifier in zip(indexes, ids, strict=True):
            if identifier in existing:
                problems.append(
                    Problem(
                        reader.where(index),
                        name,
                        f"{identifier} is already in {reader.layout.table.name}",
                    )
                )
                existing.discard(identifier)
    problems.sort(key=lambda p: _where_number(p.where))
    return problems[:limit]


def _where_number(where: str) -> int:
    return int(where.rsplit(" ", 1)[-1])


def _write(connection: Connection, run: _Run, assign_ids: bool) -> int:
    layout, reader = run.reader.layout, run.reader
    ids: Iterator[int] | None = None
    if assign_ids:
        total = reader.total_rows
        if total is None:
            total = sum(1 for _ in reader.rows())
        ranges: list[range] = []
        for start in range(0, total, cells.MAX_RESERVED_INDEXES):
            count = min(cells.MAX_RESERVED_INDEXES, total - start)
            ranges += cells.reserve_indexes(connection, table=layout.name, count=count)
        ids = (identifier for run_ in ranges for identifier in run_)
    insert = cells.insert_cells if layout.name == "cells" else cells.insert_features
    try:
        written = insert(connection, rows=run.rows(ids, collect=False))
    except InvalidInput as error:
        if error.row is None:
            raise
        raise InvalidInput(
            f"{reader.where(error.row)}: {error.detail}", field=error.field
        ) from None
    except AlreadyExists as error:
        if error.field != layout.id_column:
            raise
        found = _duplicate_problems(connection, reader, 1)
        if not found:
            raise
        raise AlreadyExists(str(found[0]), field=error.field) from None
    if not assign_ids and run.max_id > 0:
        cells.advance_index_sequence(connection, table=layout.name, past=run.max_id)
    return written


def ingest_file(
    connection: Connection,
    *,
    path: str | os.PathLike[str],
    cas_ingest_id: str,
    dataset_id: str | None = None,
    dataset_version_id: str | None = None,
    table: TableName = "cells",
    assign_ids: bool = False,
    dry_run: bool = False,
    encoding: str = "utf-8-sig",
    max_problems: int = MAX_PROBLEMS,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Stream the rows of a file into ingest ``cas_ingest_id``; return what was written.

    The ingest is created (with ``dataset_id``) when it does not exist; an existing one must
    have that dataset_id (None: any). ``table`` says what a CSV/Parquet file holds (.h5ad
    files hold both). All or nothing, in a savepoint of the caller's transaction. With
    ``dry_run`` every row is checked (duplicate and existing ids too) and nothing is written:
    the report lists up to ``max_problems`` problems. ``progress`` is called every
    PROGRESS_EVERY_ROWS rows and at the end of each table.

    Raises CasdbError (an unreadable file), ConfigurationError (the format's package missing),
    InvalidInput (unknown format or columns, a bad row naming its line or row and field, a
    file with no rows, another dataset_id, an id column with ``assign_ids``),
    AlreadyExists (an id in use: its line and value), DatabaseError.
    """
    file_path = Path(path)
    if table not in ("cells", "features"):
        raise InvalidInput(f"table must be 'cells' or 'features', got {table!r}"[:200])
    readers, uns = open_file(file_path, table=table, encoding=encoding)
    for reader in readers:
        has_ids = reader.layout.id_column in reader.columns
        if assign_ids and has_ids:
            raise InvalidInput(
                f"{file_path.name} has a {reader.layout.id_column} column: "
                "drop assign_ids (--assign-ids) to keep its ids"
            )
        if not assign_ids and not has_ids:
            raise InvalidInput(
                f"{file_path.name} has no {reader.layout.id_column} column: "
                "let the database assign ids (--assign-ids)"
            )
    dataset, create = _ensure_ingest(connection, cas_ingest_id, dataset_id)
    counts = {"cells": 0, "features": 0}
    if dry_run:
        problems: list[Problem] = []
        more = False
        for reader in readers:
            run = _Run(reader, cas_ingest_id, progress, max_problems - len(problems))
            counts[reader.layout.name] = sum(1 for _ in run.rows(None, collect=True))
            found = run.problems
            more = more or run.more
            if not assign_ids:
                found += _duplicate_problems(connection, reader, max_problems)
            problems += sorted(found, key=lambda p: _where_number(p.where))
        _refuse_empty(file_path, counts)
        return IngestReport(
            cas_ingest_id,
            dataset,
            create,
            counts["cells"],
            counts["features"],
            True,
            tuple(problems[:max_problems]),
            more or len(problems) > max_problems,
        )
    with connection.begin_nested():
        if create:
            cells.create_ingest(
                connection,
                cas_ingest_id=cas_ingest_id,
                dataset_id=dataset,
                dataset_version_id=dataset_version_id,
                uns_metadata=uns,
            )
        for reader in readers:
            run = _Run(reader, cas_ingest_id, progress, max_problems)
            counts[reader.layout.name] = _write(connection, run, assign_ids)
        _refuse_empty(file_path, counts)
    return IngestReport(cas_ingest_id, dataset, create, counts["cells"], counts["features"], False)


def _refuse_empty(path: Path, counts: Mapping[str, int]) -> None:
    if not any(counts.values()):
        raise InvalidInput(f"{path.name} holds no rows: nothing to ingest")
