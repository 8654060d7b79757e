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
import bisect
import codecs
import contextlib
import csv
import gzip
import io
import json
import math
import operator
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final, Literal

import attrs
from sqlalchemy import Boolean, Column, Connection, Integer, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from casdb._checks import INT32_MAX, INT32_MIN
from casdb.errors import AlreadyExists, CasdbError, ConfigurationError, InvalidInput, NotFound
from casdb.queries import cells
from casdb.tables import cells_cellinfo, cells_featureinfo

TableName = Literal["cells", "features"]
FORMATS: Final = (".h5ad", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")
MAX_PROBLEMS: Final = 100
PROGRESS_EVERY_ROWS: Final = 2_000
_BATCH_ROWS: Final = 10_000
_TRUE: Final = {"true", "t", "1", "yes", "y"}
_FALSE: Final = {"false", "f", "0", "no", "n"}


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


# --- converters from the column types ----------------------------------------------------


def _is_missing(value: object) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def _to_int32(value: Any) -> int:
    if isinstance(value, str):
        try:
            number = int(value.strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}"[:100]) from None
    elif isinstance(value, bool) or type(value).__name__ == "bool_":
        raise ValueError("expected an integer, got a boolean")
    elif isinstance(value, float) or type(value).__name__.startswith("float"):
        if not float(value).is_integer():
            raise ValueError(f"expected an integer, got {value!r}"[:100])
        number = int(value)
    else:
        try:
            number = operator.index(value)
        except TypeError:
            raise ValueError(f"expected an integer, got {type(value).__name__}") from None
    if not INT32_MIN <= number <= INT32_MAX:
        raise ValueError(f"{number} is out of range ({INT32_MIN} to {INT32_MAX})"[:100])
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return bool(value)
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    elif isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"expected true or false, got {value!r}"[:100])


def _text_converter(length: int | None) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected text, got {type(value).__name__}")
            value = str(value)
        if length is not None and len(value) > length:
            raise ValueError(f"is {len(value)} characters long; the limit is {length}")
        if "\x00" in value:
            raise ValueError("holds a NUL character")
        return str(value)

    return convert


def _jsonable(value: Any) -> Any:
    """Plain JSON values for numpy scalars, arrays and NaN (which JSON cannot hold: null)."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return _jsonable(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if _is_missing(value) and not isinstance(value, str):
        return None
    return value


def _to_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError(f"not a JSON document ({error})"[:120]) from None
    return _jsonable(value)


def _converter(column: Column[Any]) -> Callable[[Any], Any]:
    type_ = column.type
    if isinstance(type_, Boolean):
        return _to_bool
    if isinstance(type_, Integer):
        return _to_int32
    if isinstance(type_, JSONB):
        return _to_json
    if isinstance(type_, String):
        return _text_converter(type_.length)
    raise TypeError(f"no file converter for column {column.name} ({type_})")


@attrs.frozen
class _Layout:
    """The columns of one table a file may fill, with their converters."""

    name: TableName
    table: Table
    id_column: str
    extra_column: str
    converters: dict[str, Callable[[Any], Any]]
    required: frozenset[str]
    defaulted: frozenset[str]

    @classmethod
    def of(cls, name: TableName) -> _Layout:
        table, id_column = (
            (cells_cellinfo, "cas_cell_index") if name == "cells"
            else (cells_featureinfo, "cas_feature_index")
        )
        # The legacy ``id`` of cells_featureinfo is unused and stays NULL.
        columns = [c for c in table.columns if c.name not in ("id", "cas_ingest_id")]
        return cls(
            name=name,
            table=table,
            id_column=id_column,
            extra_column="obs_metadata_extra" if name == "cells" else "var_metadata_extra",
            converters={c.name: _converter(c) for c in columns},
            required=frozenset(
                c.name for c in columns
                if not c.nullable and c.server_default is None and c.name != id_column
            ),
            defaulted=frozenset(
                c.name for c in columns if not c.nullable and c.server_default is not None
            ),
        )

    def convert(self, raw: Mapping[str, Any], ingest_id: str) -> tuple[dict[str, Any], list[
            tuple[str, str]]]:
        """Return the row for insert_cells/insert_features and the (field, error) found."""
        row: dict[str, Any] = {"cas_ingest_id": ingest_id}
        errors: list[tuple[str, str]] = []
        for name, value in raw.items():
            if name == "cas_ingest_id":
                if not _is_missing(value) and value != ingest_id:
                    errors.append((name, f"{value!r} is not the ingest being filled "
                                         f"({ingest_id!r})"[:200]))
                continue
            if _is_missing(value):
                if name in self.required or name == self.id_column:
                    errors.append((name, "is empty, but the column is NOT NULL"))
                elif name not in self.defaulted:
                    row[name] = None
                continue
            try:
                row[name] = self.converters[name](value)
            except ValueError as error:
                errors.append((name, str(error)))
        return row, errors


# --- readers -------------------------------------------------------------------------------


class _CountingReader(io.RawIOBase):
    """A raw binary reader that counts the bytes read (progress by file position)."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self.raw.readinto(buffer)  # type: ignore[attr-defined]
        self.count += n or 0
        return int(n or 0)


@attrs.define
class _Lines:
    """Maps a row index to the line its CSV record starts on (records may span lines)."""

    breaks: list[tuple[int, int]] = attrs.field(factory=list)

    def note(self, index: int, line: int) -> None:
        if self.line_of(index) != line:
            self.breaks.append((index, line))

    def line_of(self, index: int) -> int:
        at = bisect.bisect_right(self.breaks, (index, 2**63)) - 1
        if at < 0:
            return index + 2  # line 1 is the header
        row, line = self.breaks[at]
        return line + (index - row)


class _Reader:
    """One table of a file: its columns, and its rows (as raw values) any number of times."""

    layout: _Layout
    columns: list[str]
    total_rows: int | None = None
    total_bytes: int | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def where(self, index: int) -> str:
        return f"row {index + 1}"

    def bytes_read(self) -> int:
        return 0


def _check_columns(layout: _Layout, columns: Sequence[str], where: str) -> None:
    known = set(layout.converters) | {"cas_ingest_id"}
    unknown = [name for name in columns if name not in known]
    if unknown:
        raise InvalidInput(
            f"{where}: unknown column(s) {', '.join(map(repr, unknown))}"[:300]
            + f"; valid {layout.table.name} columns: {', '.join(sorted(known))}"
        )
    duplicated = sorted({name for name in columns if list(columns).count(name) > 1})
    if duplicated:
        raise InvalidInput(f"{where}: column(s) {', '.join(duplicated)} appear twice"[:300])
    missing = sorted(layout.required - set(columns))
    if missing:
        raise InvalidInput(f"{where}: required column(s) {', '.join(missing)} missing")


def _open_binary(path: Path) -> IO[bytes]:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as error:
        raise CasdbError(f"cannot read {path}: {error.strerror or error}") from None


def _decompressed(stream: Any) -> IO[bytes]:
    """A buffered binary stream, gunzipped when it starts with gzip's magic bytes (whatever
    the file's name)."""
    if stream.peek(2)[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream  # type: ignore[no-any-return]


class _CsvReader(_Reader):
    def __init__(self, path: Path, layout: _Layout, *, delimiter: str, encoding: str) -> None:
        self.path, self.layout = path, layout
        self.delimiter, self.encoding = delimiter, encoding
        self.total_bytes = os.path.getsize(path)
        self._counter: _CountingReader | None = None
        self._lines = _Lines()
        with self._open() as (reader, _):
            try:
                self.columns = next(reader)
            except StopIteration:
                raise InvalidInput(
                    "line 1: the file is empty; expected a header of column names"
                ) from None
        _check_columns(layout, self.columns, "line 1")

    @contextlib.contextmanager
    def _open(self) -> Iterator[tuple[_Guarded, _CountingReader]]:
        raw = _open_binary(self.path)
        try:
            counter = _CountingReader(raw)
            stream = _decompressed(io.BufferedReader(counter, 1 << 20))
            text = io.TextIOWrapper(stream, encoding=self.encoding, newline="")
            reader = csv.reader(text, delimiter=self.delimiter, strict=True)
            self._counter = counter
            yield _Guarded(reader, self), counter
        finally:
            raw.close()

    def rows(self) -> Iterator[dict[str, Any]]:
        self._lines = _Lines()
        width = len(self.columns)
        with self._open() as (reader, _):
            next(reader)
            start = reader.line_num + 1
            for index, fields in enumerate(reader):
                self._lines.note(index, start)
                if len(fields) != width:
                    raise InvalidInput(f"line {start}: expected {width} fields, found "
                                       f"{len(fields)}", row=None)
                yield dict(zip(self.columns, fields, strict=True))
                start = reader.line_num + 1

    def where(self, index: int) -> str:
        return f"line {self._lines.line_of(index)}"

    def undecodable_line(self) -> int | None:
        """The first physical line that is not text in the encoding (text is decoded in
        blocks, so the reader's line count does not say)."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        raw = _open_binary(self.path)
        try:
            for number, line in enumerate(_decompressed(raw), start=1):
                try:
                    decoder.decode(line)
                except UnicodeDecodeError:
                    return number
        except (OSError, EOFError):
            return None
        finally:
            raw.close()
        return None

    def bytes_read(self) -> int:
        return self._counter.count if self._counter is not None else 0


class _Guarded:
    """A csv.reader whose decoding and syntax errors become InvalidInput naming the line."""

    def __init__(self, reader: Any, owner: _CsvReader) -> None:
        self.reader, self.owner = reader, owner

    @property
    def line_num(self) -> int:
        return int(self.reader.line_num)

    def __iter__(self) -> _Guarded:
        return self

    def __next__(self) -> list[str]:
        try:
            return next(self.reader)
        except UnicodeDecodeError as error:
            bad = error.object[error.start : error.start + 1].hex()
            line = self.owner.undecodable_line() or self.reader.line_num + 1
            raise InvalidInput(
                f"line {line}: not {self.owner.encoding} text (byte 0x{bad}): "
                "convert the file to UTF-8 or give its encoding (--encoding latin-1)"
            ) from None
        except (csv.Error, gzip.BadGzipFile, EOFError, OSError) as error:
            raise InvalidInput(
                f"line {self.reader.line_num + 1}: not a readable "
                f"{'TSV' if self.owner.delimiter == chr(9) else 'CSV'} file: {error}"[:300]
            ) from None


class _ParquetReader(_Reader):
    def __init__(self, path: Path, layout: _Layout) -> None:
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigurationError(
                "reading Parquet needs pyarrow: pip install 'casdb[parquet]'"
            ) from None
        self.layout = layout
        try:
            self._file = pq.ParquetFile(_open_binary(path))
        except CasdbError:
            raise
        except Exception as error:
            raise InvalidInput(f"{path} is not a readable Parquet file: {error}"[:300]) from None
        self.columns = list(self._file.schema_arrow.names)
        self.total_rows = self._file.metadata.num_rows
        self.total_bytes = os.path.getsize(path)
        self._done = 0
        _check_columns(layout, self.columns, "the Parquet schema")

    def rows(self) -> Iterator[dict[str, Any]]:
        self._done = 0
        for batch in self._file.iter_batches(batch_size=_BATCH_ROWS):
            for row in batch.to_pylist():
                self._done += 1
                yield row

    def bytes_read(self) -> int:
        total, rows = self.total_bytes or 0, self.total_rows or 0
        return total * self._done // rows if rows else total


class _FrameReader(_Reader):
    """obs or var of an AnnData object: the index and the casdb columns, extras to JSON."""

    def __init__(self, frame: Any, layout: _Layout, index_column: str) -> None:
        self.frame, self.layout = frame, layout
        names = [str(name) for name in frame.columns]
        self.known = [n for n in names if n in layout.converters and n != layout.extra_column]
        self.extras = [n for n in names if n not in self.known and n != "cas_ingest_id"]
        self.index_column = index_column if index_column not in names else None
        self.columns = self.known + ([self.index_column] if self.index_column else [])
        if layout.name == "features" and "feature_name" not in names:
            self.columns.append("feature_name")  # the var index stands in for it
        self.total_rows = len(frame)
        _check_columns(layout, self.columns, "the AnnData columns")

    @staticmethod
    def _values(series: Any) -> list[Any]:
        # Categorical columns (how CELLxGENE stores labels) become their plain values.
        if str(series.dtype) == "category":
            series = series.astype(object)
        return list(series.tolist())

    def rows(self) -> Iterator[dict[str, Any]]:
        frame = self.frame
        for start in range(0, len(frame), _BATCH_ROWS):
            part = frame.iloc[start : start + _BATCH_ROWS]
            columns = {name: self._values(part[name]) for name in self.known + self.extras}
            index = [str(value) for value in part.index.tolist()]
            for n in range(len(part)):
                row = {name: columns[name][n] for name in self.known}
                if self.index_column:
                    row[self.index_column] = index[n]
                if "feature_name" in self.columns and "feature_name" not in self.known:
                    row["feature_name"] = index[n]
                if self.extras:
                    row[self.layout.extra_column] = {
                        name: _jsonable(columns[name][n]) for name in self.extras
                    }
                yield row


def _read_anndata(path: Path) -> tuple[_FrameReader, _FrameReader, dict[str, Any]]:
    try:
        import anndata  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigurationError(
            "reading .h5ad needs the anndata package: pip install 'casdb[anndata]'"
        ) from None
    _open_binary(path).close()
    try:
        data = anndata.read_h5ad(path, backed="r")
    except Exception as error:
        raise InvalidInput(f"{path} is not a readable .h5ad file: {error}"[:300]) from None
    try:
        obs, var, uns = data.obs.copy(), data.var.copy(), dict(data.uns)
    finally:
        if data.file is not None:
            data.file.close()
    cells_reader = _FrameReader(obs, _Layout.of("cells"), "original_cell_id")
    features_reader = _FrameReader(var, _Layout.of("features"), "original_feature_id")
    summary = {
        str(key): _jsonable(value) for key, value in uns.items()
        if isinstance(value, str | int | float | bool)
    }
    return cells_reader, features_reader, summary


def open_file(
    path: Path, *, table: TableName = "cells", encoding: str = "utf-8-sig",
) -> tuple[list[_Reader], dict[str, Any]]:
    """Open ``path`` and check its columns; return its tables' readers and uns metadata.

    Raises CasdbError for an unreadable file, InvalidInput for an unknown format or bad
    columns, ConfigurationError when the optional package for the format is missing.
    """
    name = path.name.lower()
    if path.is_dir():
        raise CasdbError(f"cannot read {path}: it is a directory")
    if name.endswith(".h5ad"):
        obs, var, uns = _read_anndata(path)
        return [var, obs], uns  # features first: cells are what the ingest is about
    layout = _Layout.of(table)
    if name.endswith((".parquet", ".pq")):
        return [_ParquetReader(path, layout)], {}
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        delimiter = "\t" if ".tsv" in name or ".txt" in name else ","
        return [_CsvReader(path, layout, delimiter=delimiter, encoding=encoding)], {}
    raise InvalidInput(f"{path.name}: unknown file type; expected one of {', '.join(FORMATS)}")


# --- the ingest ----------------------------------------------------------------------------


def _ensure_ingest(connection: Connection, cas_ingest_id: str, dataset_id: str | None) -> tuple[
        str, bool]:
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

    reader: _Reader
    ingest_id: str
    progress: ProgressCallback | None
    max_problems: int
    problems: list[Problem] = attrs.field(factory=list)
    more: bool = False
    count: int = 0
    max_id: int = 0

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(IngestProgress(
                table=self.reader.layout.name, rows=self.count,
                total_rows=self.reader.total_rows, bytes_read=self.reader.bytes_read(),
                total_bytes=self.reader.total_bytes,
            ))

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


def _ids_with_lines(reader: _Reader) -> Iterator[tuple[int, int]]:
    """(row index, id) for every row whose id converts (for locating duplicates)."""
    name = reader.layout.id_column
    for index, raw in enumerate(reader.rows()):
        try:
            yield index, _to_int32(raw.get(name))
        except ValueError:
            continue


def _duplicate_problems(connection: Connection, reader: _Reader, limit: int) -> list[Problem]:
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
            problems.append(Problem(reader.where(indexes[at]), name,
                                    f"{ids[at]} repeats {reader.where(original)}"))
    existing = set(cells.find_existing_indexes(connection, table=table, ids=ids))
    if existing:
        for index, identifier in zip(indexes, ids, strict=True):
            if identifier in existing:
                problems.append(Problem(reader.where(index), name,
                                        f"{identifier} is already in {reader.layout.table.name}"))
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
        raise InvalidInput(f"{reader.where(error.row)}: {error.detail}", field=error.field
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
            raise InvalidInput(f"{file_path.name} has a {reader.layout.id_column} column: "
                               "drop assign_ids (--assign-ids) to keep its ids")
        if not assign_ids and not has_ids:
            raise InvalidInput(f"{file_path.name} has no {reader.layout.id_column} column: "
                               "let the database assign ids (--assign-ids)")
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
        return IngestReport(cas_ingest_id, dataset, create, counts["cells"],
                            counts["features"], True, tuple(problems[:max_problems]),
                            more or len(problems) > max_problems)
    with connection.begin_nested():
        if create:
            cells.create_ingest(connection, cas_ingest_id=cas_ingest_id, dataset_id=dataset,
                                dataset_version_id=dataset_version_id, uns_metadata=uns)
        for reader in readers:
            run = _Run(reader, cas_ingest_id, progress, max_problems)
            counts[reader.layout.name] = _write(connection, run, assign_ids)
        _refuse_empty(file_path, counts)
    return IngestReport(cas_ingest_id, dataset, create, counts["cells"], counts["features"],
                        False)


def _refuse_empty(path: Path, counts: Mapping[str, int]) -> None:
    if not any(counts.values()):
        raise InvalidInput(f"{path.name} holds no rows: nothing to ingest")
