"""The tables of a file, as raw rows (for casdb.ingest): CSV/TSV (gzip too), Parquet, AnnData.

A :class:`Reader` knows its table's :class:`~casdb._ingest_values.Layout`, the file's
columns (checked at opening: before any SQL), its rows any number of times, where a row is
(``line N`` of a CSV, ``row N`` otherwise) and how far it has read.
"""

from __future__ import annotations

import bisect
import codecs
import contextlib
import csv
import gzip
import io
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import attrs

from casdb._ingest_values import Layout, TableName, jsonable
from casdb.errors import CasdbError, ConfigurationError, InvalidInput

FORMATS: Final = (".h5ad", ".parquet", ".csv", ".tsv", ".csv.gz", ".tsv.gz")
_BATCH_ROWS: Final = 10_000


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

    # (row index, its start line) wherever the line stops being ``index + 2``
    breaks: list[tuple[int, int]] = attrs.field(factory=list)

    def line_of(self, index: int) -> int:
        at = bisect.bisect_right(self.breaks, (index, 2**63)) - 1
        if at < 0:
            return index + 2  # line 1 is the header
        row, line = self.breaks[at]
        return line + (index - row)


class Reader:
    """One table of a file: its columns, and its rows (as raw values) any number of times."""

    layout: Layout
    columns: list[str]
    total_rows: int | None = None
    total_bytes: int | None = None

    def rows(self) -> Iterator[dict[str, Any]]:
        raise NotImplementedError

    def where(self, index: int) -> str:
        return f"row {index + 1}"

    def bytes_read(self) -> int:
        return 0


def _check_columns(layout: Layout, columns: Sequence[str], where: str) -> None:
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


def open_binary(path: Path) -> IO[bytes]:
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


class _CsvReader(Reader):
    def __init__(self, path: Path, layout: Layout, *, delimiter: str, encoding: str) -> None:
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
        raw = open_binary(self.path)
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
            shift = 0  # lines so far beyond one per record (records may span lines)
            for index, fields in enumerate(reader):
                if start - index - 2 != shift:
                    shift = start - index - 2
                    self._lines.breaks.append((index, start))
                if len(fields) != width:
                    raise InvalidInput(
                        f"line {start}: expected {width} fields, found {len(fields)}", row=None
                    )
                yield dict(zip(self.columns, fields, strict=True))
                start = reader.line_num + 1

    def where(self, index: int) -> str:
        return f"line {self._lines.line_of(index)}"

    def undecodable_line(self) -> int | None:
        """The first physical line that is not text in the encoding (text is decoded in
        blocks, so the reader's line count does not say)."""
        decoder = codecs.getincrementaldecoder(self.encoding)()
        raw = open_binary(self.path)
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


class _ParquetReader(Reader):
    def __init__(self, path: Path, layout: Layout) -> None:
        try:
            import pyarrow.parquet as pq  # type: ignore[import-untyped]
        except ImportError:
            raise ConfigurationError(
                "reading Parquet needs pyarrow: pip install 'casdb[parquet]'"
            ) from None
        self.layout = layout
        try:
            self._file = pq.ParquetFile(open_binary(path))
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


class _FrameReader(Reader):
    """obs or var of an AnnData object: the index and the casdb columns, extras to JSON."""

    def __init__(self, frame: Any, layout: Layout, index_column: str) -> None:
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
                        name: jsonable(columns[name][n]) for name in self.extras
                    }
                yield row


def _read_anndata(path: Path) -> tuple[_FrameReader, _FrameReader, dict[str, Any]]:
    try:
        import anndata  # type: ignore[import-untyped]
    except ImportError:
        raise ConfigurationError(
            "reading .h5ad needs the anndata package: pip install 'casdb[anndata]'"
        ) from None
    open_binary(path).close()
    try:
        data = anndata.read_h5ad(path, backed="r")
    except Exception as error:
        raise InvalidInput(f"{path} is not a readable .h5ad file: {error}"[:300]) from None
    try:
        obs, var, uns = data.obs.copy(), data.var.copy(), dict(data.uns)
    finally:
        if data.file is not None:
            data.file.close()
    cells_reader = _FrameReader(obs, Layout.of("cells"), "original_cell_id")
    features_reader = _FrameReader(var, Layout.of("features"), "original_feature_id")
    summary = {
        str(key): jsonable(value)
        for key, value in uns.items()
        if isinstance(value, str | int | float | bool)
    }
    return cells_reader, features_reader, summary


def open_file(
    path: Path,
    *,
    table: TableName = "cells",
    encoding: str = "utf-8-sig",
) -> tuple[list[Reader], dict[str, Any]]:
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
    layout = Layout.of(table)
    if name.endswith((".parquet", ".pq")):
        return [_ParquetReader(path, layout)], {}
    if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")):
        delimiter = "\t" if ".tsv" in name or ".txt" in name else ","
        return [_CsvReader(path, layout, delimiter=delimiter, encoding=encoding)], {}
    raise InvalidInput(f"{path.name}: unknown file type; expected one of {', '.join(FORMATS)}")
