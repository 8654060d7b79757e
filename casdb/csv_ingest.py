"""Bulk ingest of cell metadata from a CSV file: streaming, all or nothing, line numbers in errors.

The CSV has a header of cells_cellinfo column names (``cas_cell_index`` and ``cell_type``
required; ``cas_ingest_id`` optional and, when present, equal to the ingest being filled).
Empty fields are NULL; ``is_primary_data`` takes true/false (also t/f, 1/0, yes/no),
``obs_metadata_extra`` a JSON document, ``total_mrna_umis``/``cas_cell_index`` integers.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs
from sqlalchemy import Connection

from casdb.errors import InvalidInput, NotFound
from casdb.queries import cells

CELL_COLUMNS = tuple(field.name for field in attrs.fields(cells.CellRecord))
_REQUIRED = ("cas_cell_index", "cell_type")
_TRUE = {"true", "t", "1", "yes", "y"}
_FALSE = {"false", "f", "0", "no", "n"}

# field -> converter of a non-empty CSV text
_CONVERTERS: dict[str, Callable[[str], Any]] = {
    "cas_cell_index": int,
    "total_mrna_umis": int,
    "obs_metadata_extra": json.loads,
}

Progress = Callable[[int, int, int], None]  # rows so far, bytes read, total bytes


def _boolean(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {text!r}"[:80])


class _CountingReader(io.RawIOBase):
    """A raw binary reader that counts the bytes read (for progress by file position)."""

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
    """Maps a row index to the line its record starts on (records may span lines)."""

    # (row index, its start line) wherever the line stops being ``index + first line``
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


def _rows(reader: Any, header: list[str], ingest_id: str, lines: _Lines,
          on_row: Callable[[int], None]) -> Iterator[dict[str, Any]]:
    start = reader.line_num + 1
    for index, fields in enumerate(reader):
        lines.note(index, start)
        if len(fields) != len(header):
            raise InvalidInput(
                f"line {start}: expected {len(header)} fields, found {len(fields)}"
            )
        row: dict[str, Any] = {"cas_ingest_id": ingest_id}
        for name, text in zip(header, fields, strict=True):
            if text == "":
                row[name] = None
                continue
            try:
                if name == "is_primary_data":
                    row[name] = _boolean(text)
                elif name in _CONVERTERS:
                    row[name] = _CONVERTERS[name](text)
                else:
                    row[name] = text
            except ValueError as error:
                raise InvalidInput(f"line {start}: field {name}: {error}"[:300]) from None
        if row["cas_ingest_id"] != ingest_id:
            raise InvalidInput(
                f"line {start}: field cas_ingest_id: {row['cas_ingest_id']!r} is not the "
                f"ingest being filled ({ingest_id!r})"[:300]
            )
        on_row(index)
        start = reader.line_num + 1
        yield row


def _header(reader: Any) -> list[str]:
    try:
        header: list[str] = next(reader)
    except StopIteration:
        raise InvalidInput("line 1: the file is empty; expected a header of cell columns") from None
    unknown = [name for name in header if name not in CELL_COLUMNS]
    if unknown:
        raise InvalidInput(
            f"line 1: unknown column(s) {', '.join(map(repr, unknown))}; valid columns: "
            + ", ".join(CELL_COLUMNS)
        )
    duplicated = sorted({name for name in header if header.count(name) > 1})
    if duplicated:
        raise InvalidInput(f"line 1: column(s) {', '.join(duplicated)} appear twice")
    missing = [name for name in _REQUIRED if name not in header]
    if missing:
        raise InvalidInput(f"line 1: required column(s) {', '.join(missing)} missing")
    return header


def ingest_csv(
    connection: Connection,
    *,
    path: Path,
    cas_ingest_id: str,
    dataset_id: str,
    progress: Progress | None = None,
    progress_every: float = 0.5,
) -> int:
    """Stream the cells of a CSV file into ingest ``cas_ingest_id``; return the rows written.

    Creates the ingest (with ``dataset_id``) when it does not exist. Runs inside the caller's
    transaction and writes nothing on error. Raises InvalidInput naming the line and field of a
    malformed row, AlreadyExists for a cas_cell_index in use, DatabaseError.
    """
    try:
        cells.get_ingest(connection, cas_ingest_id=cas_ingest_id)
    except NotFound:
        cells.create_ingest(connection, cas_ingest_id=cas_ingest_id, dataset_id=dataset_id)
    total = os.path.getsize(path)
    lines = _Lines()
    with open(path, "rb") as raw:
        counter = _CountingReader(raw)
        text = io.TextIOWrapper(io.BufferedReader(counter, 1 << 20), encoding="utf-8-sig",
                                newline="")
        reader = csv.reader(text, strict=True)
        header = _header(reader)
        last = [time.monotonic()]

        def on_row(index: int) -> None:
            if progress is not None and index % 1000 == 0:
                now = time.monotonic()
                if now - last[0] >= progress_every:
                    last[0] = now
                    progress(index, counter.count, total)

        try:
            written = cells.insert_cells(
                connection, rows=_rows(reader, header, cas_ingest_id, lines, on_row)
            )
        except InvalidInput as error:
            row = getattr(error, "row", None)
            if row is None:
                raise
            raise InvalidInput(f"line {lines.line_of(row)}: {error.detail}") from None
        except (csv.Error, UnicodeDecodeError) as error:
            raise InvalidInput(f"line {reader.line_num}: not valid CSV: {error}"[:300]) from None
    if progress is not None:
        progress(written, total, total)
    return written
