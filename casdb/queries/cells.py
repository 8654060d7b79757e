"""Cell metadata: ingests, features and cells, written in bulk with COPY and read back by id.

Bulk writes (:func:`insert_cells`, :func:`insert_features`) stream any iterable of rows into
``COPY ... FROM STDIN`` in text format, a few thousand rows per message, so that millions of
rows go in at COPY speed and in bounded memory. Each row is validated as it streams; a bad row
anywhere raises InvalidInput naming its index and field, and nothing of the call stays: the
COPY runs inside a savepoint that is rolled back, so the caller's transaction stays usable.

Lookups (:func:`get_cell_metadata_by_ids`) bind the ids as ONE int[] array per chunk and join
``unnest(ids) WITH ORDINALITY`` to the table, so any number of ids costs one round trip per
chunk and the result keeps the order of the input.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import gc
import json
import json.encoder
import operator
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, Final

import attrs
import pg8000.exceptions
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Delete,
    Insert,
    Integer,
    NestedTransaction,
    Select,
    String,
    Table,
    bindparam,
    delete,
    func,
    select,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql.base import PGDialect
from sqlalchemy.engine import Dialect

from casdb._checks import (
    INT32_MAX,
    INT32_MIN,
    check_int,
    check_json,
    check_optional_text,
    check_optional_time,
    check_text,
    describe,
    translated_errors,
)
from casdb.errors import AlreadyExists, InvalidInput, NotFound
from casdb.queries._rows import (
    execute,
    fetch_all,
    fetch_one,
    fetch_optional,
    fetch_scalar,
    record_columns,
)
from casdb.tables import cells_cellinfo, cells_featureinfo, cells_ingestinfo

__all__ = [
    "CELL_COLUMN_NAMES",
    "MAX_RESERVED_INDEXES",
    "CellMetadata",
    "CellRecord",
    "FeatureRecord",
    "IngestRecord",
    "advance_index_sequence",
    "build_advance_index_sequence",
    "build_count_cells",
    "build_create_ingest",
    "build_delete_ingest",
    "build_existing_indexes",
    "build_list_features_for_ingest",
    "build_list_ingests",
    "build_reserve_indexes",
    "build_select_cells_by_ids",
    "build_select_ingest",
    "count_cells",
    "create_ingest",
    "delete_ingest",
    "find_existing_indexes",
    "get_cell_metadata_by_ids",
    "get_ingest",
    "insert_cells",
    "insert_features",
    "list_features_for_ingest",
    "list_ingests",
    "reserve_indexes",
]

LOOKUP_CHUNK_SIZE = 50_000
"""Ids bound per lookup statement (one int[] parameter, one round trip per chunk)."""

COPY_CHUNK_ROWS = 5_000
"""Rows per COPY data message (about 1 MB of typical cell metadata)."""

COPY_CHUNK_BYTES = 8_000_000
"""Chunks of large rows shrink so that a COPY data message stays near this size."""

_CELL_UNIQUE: Final = {"pk_cells_cellinfo": "cas_cell_index"}
_FEATURE_UNIQUE: Final = {"pk_cells_featureinfo": "cas_feature_index"}
_UNKNOWN_INGEST = "no ingest with this cas_ingest_id exists (create_ingest first)"
_CELL_FOREIGN_KEYS: Final = {"fk_cells_cellinfo_cas_ingest_id_cells_ingestinfo": _UNKNOWN_INGEST}
_FEATURE_FOREIGN_KEYS: Final = {
    "fk_cells_featureinfo_cas_ingest_id_cells_ingestinfo": _UNKNOWN_INGEST
}


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@attrs.frozen
class IngestRecord:
    """A row of cells_ingestinfo; ingest_timestamp is aware UTC."""

    cas_ingest_id: str
    dataset_id: str
    dataset_version_id: str | None
    uns_metadata: Any
    ingest_timestamp: dt.datetime | None


@attrs.frozen(kw_only=True)
class FeatureRecord:
    """A row of cells_featureinfo (the legacy ``id`` column is not part of it: it stays NULL).

    Defaults are those of the table: feature_is_filtered False, var_metadata_extra {}.
    """

    cas_feature_index: int
    cas_ingest_id: str
    original_feature_id: str
    feature_name: str
    feature_biotype: str | None = None
    feature_is_filtered: bool | None = False
    feature_reference: str | None = None
    var_metadata_extra: Any = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class CellRecord:
    """A row of cells_cellinfo, as :func:`insert_cells` takes it.

    Defaults are those of the table: obs_metadata_extra {}, is_primary_data True, every other
    optional column None (NULL).
    """

    cas_cell_index: int
    cas_ingest_id: str
    cell_type: str
    original_cell_id: str | None = None
    obs_metadata_extra: Any = attrs.field(factory=dict)
    is_primary_data: bool | None = True
    donor_id: str | None = None
    assay: str | None = None
    development_stage: str | None = None
    tissue: str | None = None
    disease: str | None = None
    organism: str | None = None
    self_reported_ethnicity: str | None = None
    sex: str | None = None
    suspension_type: str | None = None
    total_mrna_umis: int | None = None
    cell_type_ontology_term_id: str | None = None
    assay_ontology_term_id: str | None = None
    development_stage_ontology_term_id: str | None = None
    tissue_ontology_term_id: str | None = None
    disease_ontology_term_id: str | None = None
    organism_ontology_term_id: str | None = None
    self_reported_ethnicity_ontology_term_id: str | None = None
    sex_ontology_term_id: str | None = None


@attrs.frozen
class CellMetadata:
    """One cell found by :func:`get_cell_metadata_by_ids`.

    ``values`` maps each requested column name, in the order requested, to its value (jsonb
    columns decoded; NULL is None). cas_cell_index is always set, requested or not.
    """

    cas_cell_index: int
    values: dict[str, Any]


_INGEST_COLUMNS = record_columns(cells_ingestinfo, IngestRecord)
_FEATURE_COLUMNS = record_columns(cells_featureinfo, FeatureRecord)
CELL_COLUMN_NAMES: Final = tuple(column.name for column in cells_cellinfo.columns)
"""Every column of cells_cellinfo, in table order: the valid ``columns`` of lookups."""


def _cell_metadata_from_rows(names: Sequence[str], rows: list[Any]) -> list[CellMetadata]:
    # Rows hold the requested columns, then cas_cell_index. (A whole batch per call: a
    # function call per row would be a quarter of the cost of building the records.)
    return [CellMetadata(row[-1], dict(zip(names, row, strict=False))) for row in rows]


# --------------------------------------------------------------------------------------------
# Statement builders (each compiles without a database)
# --------------------------------------------------------------------------------------------


def build_create_ingest(values: dict[str, Any]) -> Insert:
    """INSERT one ingest with ``values`` (columns left out take their server defaults).

    ON CONFLICT DO NOTHING: an existing id returns no row (and aborts no transaction).
    """
    return (
        postgresql.insert(cells_ingestinfo)
        .values(values)
        .on_conflict_do_nothing()
        .returning(*_INGEST_COLUMNS)
    )


def build_select_ingest(cas_ingest_id: str) -> Select[Any]:
    """SELECT one ingest by id."""
    return select(*_INGEST_COLUMNS).where(cells_ingestinfo.c.cas_ingest_id == cas_ingest_id)


def build_list_ingests() -> Select[Any]:
    """SELECT every ingest, ordered by cas_ingest_id."""
    return select(*_INGEST_COLUMNS).order_by(cells_ingestinfo.c.cas_ingest_id)


def build_delete_ingest(cas_ingest_id: str) -> Delete:
    """DELETE one ingest; its cells and features go with it (ON DELETE CASCADE)."""
    return delete(cells_ingestinfo).where(cells_ingestinfo.c.cas_ingest_id == cas_ingest_id)


def build_list_features_for_ingest(cas_ingest_id: str) -> Select[Any]:
    """SELECT the features of one ingest, ordered by cas_feature_index."""
    return (
        select(*_FEATURE_COLUMNS)
        .where(cells_featureinfo.c.cas_ingest_id == cas_ingest_id)
        .order_by(cells_featureinfo.c.cas_feature_index)
    )


def build_count_cells(cas_ingest_id: str | None = None) -> Select[Any]:
    """SELECT the number of cells, of one ingest or (None) of all."""
    statement = select(func.count()).select_from(cells_cellinfo)
    if cas_ingest_id is not None:
        statement = statement.where(cells_cellinfo.c.cas_ingest_id == cas_ingest_id)
    return statement


def build_select_cells_by_ids(columns: Sequence[str]) -> Select[Any]:
    """SELECT ``columns`` and then cas_cell_index of the cells whose ids the array ``:ids`` holds.

    The one parameter, ``ids``, is an int[]: ``unnest(:ids) WITH ORDINALITY`` joined to the
    table returns one row per id found, in the order of the array (a repeated id repeats).
    ``columns`` must be names of cells_cellinfo columns (KeyError otherwise).
    """
    ids = (
        func.unnest(bindparam("ids", type_=postgresql.ARRAY(Integer)))
        .table_valued("id", with_ordinality="ord")
        .render_derived(name="q")
    )
    wanted = [cells_cellinfo.c[name] for name in columns]
    return (
        select(*wanted, cells_cellinfo.c.cas_cell_index)
        .select_from(ids.join(cells_cellinfo, cells_cellinfo.c.cas_cell_index == ids.c.id))
        .order_by(ids.c.ord)
    )


def build_copy_from_stdin(table: Table, columns: Sequence[Column[Any]]) -> str:
    """``COPY table (columns) FROM STDIN`` (text format); names come from the Table metadata.

    COPY has no Core construct; the identifiers are quoted by the PostgreSQL dialect.
    """
    assert all(column.table is table for column in columns), "columns of another table"
    preparer = PGDialect().identifier_preparer  # type: ignore[no-untyped-call]
    names = ", ".join(preparer.format_column(column) for column in columns)
    return f"COPY {preparer.format_table(table)} ({names}) FROM STDIN"


# --------------------------------------------------------------------------------------------
# Bulk rows -> COPY text, validated as the rows stream
#
# Rows are gathered a chunk at a time (COPY_CHUNK_ROWS) as tuples in column order. The fast
# path checks and renders each column of the chunk with C-level builtins (type sets, min/max,
# map); any column it cannot vouch for sends the chunk to the per-row path, which converts each
# field with full checks, so that the first bad row raises InvalidInput naming index and field.
# --------------------------------------------------------------------------------------------

_NULL: Final = "\\N"
_NONE: Final = type(None)
_MISSING: Final = object()
_NULL_FOR_NONE: Final[dict[object, str]] = {None: _NULL}
_BOOL_TEXT: Final[dict[object, str]] = {True: "t", False: "f", None: _NULL}
# A one-field row: COPY fails with "missing data for column", aborting the statement cleanly.
_ABORT_COPY: Final = b"\\N\n"
_ESCAPES: Final = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_JSON_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_JSON_KEYS: Final = frozenset({str})
_JSON_SCALARS: Final = frozenset({str, int, float, bool, _NONE})


def _flat_json_encoder() -> Callable[[Any, int], Iterable[str]]:
    """The C encoder that json.dumps makes on every call, made once.

    Used for flat dicts only, which cannot be circular: no reference markers are needed.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - CPython has the C accelerator
        return lambda value, _level: [_JSON_ENCODER.encode(value)]
    encoder: Callable[[Any, int], Iterable[str]] = make(
        None, _JSON_ENCODER.default, json.encoder.encode_basestring, None, ":", ",",
        False, False, False,
    )  # fmt: skip
    return encoder


_encode_flat_json: Final = _flat_json_encoder()

Converter = Callable[[Any], str]
"""Checks one value of a column and returns its (unescaped) COPY text; raises _BadValue."""
ColumnRenderer = Callable[[tuple[Any, ...]], Sequence[str] | None]
"""Checks and renders one column of a chunk at C speed; None when it cannot vouch for it."""


class _BadValue(Exception):
    """A value its column cannot take: ``field`` names the column, ``detail`` says why."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


def _describe(value: object) -> str:
    return "nothing (the field is required)" if value is _MISSING else type(value).__name__


def _text_converter(name: str, max_length: int, nullable: bool) -> Converter:
    def convert(value: Any) -> str:
        if isinstance(value, str) and len(value) <= max_length:
            return value  # NUL and lone surrogates are looked for once per chunk
        if value is None and nullable:
            return _NULL
        if isinstance(value, str):
            raise _BadValue(
                name, f"{name} is {len(value)} characters long; the limit is {max_length}"
            )
        raise _BadValue(name, f"{name} must be a string, got {_describe(value)}")

    return convert


def _text_renderer(max_length: int, nullable: bool) -> ColumnRenderer:
    allowed = {str, _NONE} if nullable else {str}

    def render(values: tuple[Any, ...]) -> Sequence[str] | None:
        kinds = set(map(type, values))
        if not kinds <= allowed:
            return None
        texts: Sequence[Any] = values
        if _NONE in kinds:
            texts = list(map(_NULL_FOR_NONE.get, values, values))
        return texts if max(map(len, texts)) <= max_length else None

    return render


def _int_converter(name: str, nullable: bool) -> Converter:
    def convert(value: Any) -> str:
        if value.__class__ is int and INT32_MIN <= value <= INT32_MAX:
            return str(value)
        if value is None and nullable:
            return _NULL
        if isinstance(value, bool | str) or not hasattr(value, "__index__"):
            raise _BadValue(name, f"{name} must be an integer, got {_describe(value)}")
        number = operator.index(value)  # int subclasses, numpy integers and the like
        if INT32_MIN <= number <= INT32_MAX:
            return str(number)
        raise _BadValue(
            name, f"{name} must be between {INT32_MIN} and {INT32_MAX}, got {describe(number)}"
        )

    return convert


def _int_renderer(nullable: bool) -> ColumnRenderer:
    allowed = {int, _NONE} if nullable else {int}

    def render(values: tuple[Any, ...]) -> list[str] | None:
        kinds = set(map(type, values))
        if not kinds <= allowed:
            return None
        numbers = list(filter(None, values))  # drops None (and 0, which is in range)
        if numbers and (min(numbers) < INT32_MIN or max(numbers) > INT32_MAX):
            return None
        return list(map(_NULL_FOR_NONE.get, values, map(str, values)))

    return render


def _bool_converter(name: str, nullable: bool) -> Converter:
    def convert(value: Any) -> str:
        if value is True:
            return "t"
        if value is False:
            return "f"
        if value is None and nullable:
            return _NULL
        raise _BadValue(name, f"{name} must be true or false, got {_describe(value)}")

    return convert


def _bool_renderer(nullable: bool) -> ColumnRenderer:
    allowed = {bool, _NONE} if nullable else {bool}

    def render(values: tuple[Any, ...]) -> list[str] | None:
        if not set(map(type, values)) <= allowed:
            return None
        return list(map(_BOOL_TEXT.__getitem__, values))

    return render


def _json_converter(name: str, nullable: bool) -> Converter:
    def convert(value: Any) -> str:
        if (
            value.__class__ is dict
            and set(map(type, value)) <= _JSON_KEYS
            and set(map(type, value.values())) <= _JSON_SCALARS
        ):
            # The usual document, a flat dict of scalars, needs no walk: the encoder rejects
            # NaN, and a NUL shows as \u0000 in its output (then the full check decides).
            try:
                encoded = "".join(_encode_flat_json(value, 0))
            except ValueError:
                encoded = "\\u0000"
            if "\\u0000" not in encoded:
                return encoded
        if value is None and nullable:
            return _NULL
        if value is None or value is _MISSING:
            raise _BadValue(name, f"{name} must be a JSON document, got {_describe(value)}")
        try:
            check_json(name, value)
            return _JSON_ENCODER.encode(value)
        except InvalidInput as error:
            raise _BadValue(name, str(error)) from None
        except (TypeError, ValueError) as error:
            raise _BadValue(name, f"{name} is not serialisable as JSON: {error}") from None

    return convert


def _json_renderer(convert: Converter) -> ColumnRenderer:
    def render(values: tuple[Any, ...]) -> list[str] | None:
        try:
            return list(map(convert, values))
        except _BadValue:
            return None

    return render


def _converters(column: Column[Any]) -> tuple[Converter, ColumnRenderer]:
    """The per-value converter and the per-chunk renderer of a column, by its type."""
    name, nullable = column.name, bool(column.nullable)
    if isinstance(column.type, String) and column.type.length is not None:
        length = column.type.length
        return _text_converter(name, length, nullable), _text_renderer(length, nullable)
    if isinstance(column.type, Integer):
        return _int_converter(name, nullable), _int_renderer(nullable)
    if isinstance(column.type, Boolean):
        return _bool_converter(name, nullable), _bool_renderer(nullable)
    if isinstance(column.type, JSONB):
        convert = _json_converter(name, nullable)
        return convert, _json_renderer(convert)
    raise TypeError(f"no COPY converter for {name} of type {column.type}")


@attrs.frozen
class _CopyLayout:
    """How rows of one table become COPY text: columns, their converters, row defaults."""

    table: Table
    columns: tuple[Column[Any], ...]
    record_type: type
    converters: tuple[Converter, ...]
    renderers: tuple[ColumnRenderer, ...]
    defaults: dict[str, Any]
    from_record: Callable[[Any], tuple[Any, ...]]
    from_mapping: Callable[[Any], tuple[Any, ...]]
    unique: Mapping[str, str]
    foreign_keys: Mapping[str, str]

    @classmethod
    def of(
        cls,
        table: Table,
        record_type: type,
        *,
        unique: Mapping[str, str],
        foreign_keys: Mapping[str, str],
    ) -> _CopyLayout:
        fields = attrs.fields(record_type)
        names = [field.name for field in fields]
        defaults: dict[str, Any] = {}
        for field in fields:
            if field.default is attrs.NOTHING:
                defaults[field.name] = _MISSING
            elif isinstance(field.default, attrs.Factory):  # type: ignore[arg-type]
                defaults[field.name] = field.default.factory()
            else:
                defaults[field.name] = field.default
        pairs = [_converters(table.c[name]) for name in names]
        return cls(
            table=table,
            columns=tuple(table.c[name] for name in names),
            record_type=record_type,
            converters=tuple(convert for convert, _ in pairs),
            renderers=tuple(render for _, render in pairs),
            defaults=defaults,
            from_record=operator.attrgetter(*names),
            from_mapping=operator.itemgetter(*names),
            unique=unique,
            foreign_keys=foreign_keys,
        )

    def values(self, index: int, row: object) -> tuple[Any, ...]:
        """The row's values in column order; omitted mapping keys take the table's defaults."""
        if isinstance(row, self.record_type):
            return self.from_record(row)
        if row.__class__ is dict or isinstance(row, Mapping):
            merged = {**self.defaults, **row}
            if len(merged) != len(self.defaults):
                unknown = sorted(repr(key) for key in merged if key not in self.defaults)
                raise InvalidInput(f"unknown field(s) {', '.join(unknown)}"[:500], row=index)
            return self.from_mapping(merged)
        raise InvalidInput(
            f"must be a {self.record_type.__name__} or a mapping, got {type(row).__name__}",
            row=index,
        )

    def fast_lines(self, pending: list[tuple[Any, ...]]) -> tuple[list[str], int] | None:
        """The chunk's lines (unescaped) and its NULL count, or None if a column needs a look."""
        columns = list(zip(*pending, strict=True))
        rendered = []
        for render, values in zip(self.renderers, columns, strict=True):
            texts = render(values)
            if texts is None:
                return None
            rendered.append(texts)
        nulls = sum(values.count(None) for values in columns)
        return list(map("\t".join, zip(*rendered, strict=True))), nulls

    def checked_lines(
        self, first_index: int, pending: list[tuple[Any, ...]]
    ) -> tuple[list[str], int]:
        """Like fast_lines, one row at a time; raises InvalidInput for the first bad field."""
        lines = []
        nulls = 0
        for offset, values in enumerate(pending):
            try:
                lines.append("\t".join(map(operator.call, self.converters, values)))
            except _BadValue as bad:
                raise InvalidInput(bad.detail, row=first_index + offset, field=bad.field) from None
            nulls += values.count(None)
        return lines, nulls

    def escaped_line(self, index: int, values: tuple[Any, ...]) -> str:
        """One row as COPY text with every field escaped, NUL and lone surrogates refused."""
        fields = []
        for column, convert, value in zip(self.columns, self.converters, values, strict=True):
            if value is None:
                fields.append(_NULL)
                continue
            name, text = column.name, convert(value)
            if "\x00" in text:
                raise InvalidInput(f"{name} must not contain NUL characters", row=index, field=name)
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidInput(
                    f"{name} contains a lone surrogate (not valid UTF-8)", row=index, field=name
                ) from None
            fields.append(text.translate(_ESCAPES))
        return "\t".join(fields)

    def chunk(self, first_index: int, pending: list[tuple[Any, ...]]) -> bytes:
        """Validate and encode the rows of one COPY data message (``first_index``: the first's).

        Escaping is needed exactly when the joined text has more than one tab per separator,
        one newline per row and one backslash per NULL, or any CR or NUL: that is checked on
        the whole text, and only then is each field escaped.
        """
        done = self.fast_lines(pending)
        lines, nulls = done if done is not None else self.checked_lines(first_index, pending)
        text = "\n".join(lines) + "\n"
        rows = len(lines)
        if (
            text.count("\\") != nulls
            or text.count("\n") != rows
            or text.count("\t") != rows * (len(self.columns) - 1)
            or "\r" in text
            or "\x00" in text
        ):
            text = "".join(
                self.escaped_line(first_index + offset, values) + "\n"
                for offset, values in enumerate(pending)
            )
        try:
            return text.encode("utf-8")
        except UnicodeEncodeError:
            for offset, values in enumerate(pending):
                self.escaped_line(first_index + offset, values)  # raises for the bad row
            raise  # pragma: no cover - escaped_line found it

    def copy_chunks(self, rows: Iterable[object]) -> Iterator[bytes]:
        """Validate and encode ``rows`` as COPY text, one bytes chunk per data message.

        Chunks start small and double up to COPY_CHUNK_ROWS rows while they stay within
        COPY_CHUNK_BYTES; a chunk over it shrinks the next one in proportion. So memory stays
        bounded (about COPY_CHUNK_BYTES of text, plus the rows it came from), whatever the
        number of rows and however large their JSON.
        """
        per_chunk = min(COPY_CHUNK_ROWS, 256)
        pending: list[tuple[Any, ...]] = []
        values = self.values
        for index, row in enumerate(rows):
            pending.append(values(index, row))
            if len(pending) >= per_chunk:
                data = self.chunk(index + 1 - len(pending), pending)
                yield data
                pending = []
                if len(data) > COPY_CHUNK_BYTES:
                    per_chunk = max(1, per_chunk * COPY_CHUNK_BYTES // len(data))
                elif len(data) * 2 <= COPY_CHUNK_BYTES:
                    per_chunk = min(COPY_CHUNK_ROWS, per_chunk * 2)
        if pending:
            yield self.chunk(index + 1 - len(pending), pending)


_CELL_LAYOUT: Final = _CopyLayout.of(
    cells_cellinfo, CellRecord, unique=_CELL_UNIQUE, foreign_keys=_CELL_FOREIGN_KEYS
)
_FEATURE_LAYOUT: Final = _CopyLayout.of(
    cells_featureinfo, FeatureRecord, unique=_FEATURE_UNIQUE, foreign_keys=_FEATURE_FOREIGN_KEYS
)


def _guarded(chunks: Iterator[bytes], failures: list[BaseException]) -> Iterator[bytes]:
    """Pass ``chunks`` on; if producing one fails, keep the error and make the COPY fail.

    An exception must not escape into pg8000 mid-COPY: it would leave the protocol stuck in
    copy-in mode. Instead a malformed row ends the stream, the server rejects the statement,
    and the caller re-raises the kept error once the savepoint is rolled back.
    """
    try:
        yield from chunks
    except GeneratorExit:
        raise
    except BaseException as error:  # noqa: B036 - re-raised by _copy after the rollback
        failures.append(error)
        yield _ABORT_COPY


def _set_tcp_nodelay(driver_connection: Any) -> None:
    """Turn Nagle's algorithm off on pg8000's TCP socket, as libpq does on every connection.

    COPY is the one exchange where the client sends twice in a row (the last data, then
    CopyDone + Sync) without a reply in between: with Nagle on, the second send waits for the
    server's delayed ACK, 40 ms on Linux, added to every COPY however small.
    """
    sock = getattr(driver_connection, "_usock", None)  # pg8000 keeps its socket there
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextlib.contextmanager
def _driver_cursor(connection: Connection, statement: str) -> Iterator[Any]:
    """A pg8000 cursor of ``connection``, its errors raised as SQLAlchemy's DBAPIError.

    The bulk paths talk to the driver directly: COPY has no SQLAlchemy API, and lookups skip
    SQLAlchemy's Row objects. Wrapped, the driver's errors reach translated_errors as usual.
    """
    if not connection.in_transaction():
        connection.begin()  # what connection.execute would do: the caller owns it
    driver_connection = connection.connection.driver_connection
    assert driver_connection is not None
    _set_tcp_nodelay(driver_connection)
    cursor = driver_connection.cursor()
    try:
        yield cursor
    except pg8000.exceptions.Error as error:
        lost = connection.dialect.is_disconnect(error, driver_connection, cursor)
        if lost:  # tell SQLAlchemy, as its own execute would: the pool drops the connection
            connection.invalidate(error)
        raise sa_exc.DBAPIError(statement, None, error, connection_invalidated=lost) from None
    finally:
        if not connection.invalidated:
            cursor.close()


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if on) while a large result is built.

    Each found cell allocates a few containers (the driver's row, decoded JSON, the values
    dict, the record); with the collector on, its repeated passes over them cost as much as
    pg8000's decoding of the rows. Nothing built here is cyclic; the collector resumes after.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _roll_back(connection: Connection, savepoint: NestedTransaction) -> None:
    """Roll the savepoint back, unless the connection is lost (the error at hand says why)."""
    if connection.invalidated or not savepoint.is_active:
        return
    try:
        savepoint.rollback()
    except sa_exc.DBAPIError:
        pass  # the connection broke meanwhile: SQLAlchemy invalidated it; the caller rolls back


def _copy(connection: Connection, layout: _CopyLayout, rows: Iterable[object]) -> int:
    """Stream ``rows`` into ``layout.table`` with COPY inside a savepoint; return rows written."""
    if isinstance(rows, str | bytes | Mapping) or not isinstance(rows, Iterable):
        raise InvalidInput("rows must be an iterable of records or mappings")
    chunks = layout.copy_chunks(rows)
    first = next(chunks, None)  # a bad row among the first ones fails before any SQL
    if first is None:
        return 0
    statement = build_copy_from_stdin(layout.table, layout.columns)
    failures: list[BaseException] = []
    with translated_errors(connection=connection):
        savepoint = connection.begin_nested()
    try:
        with (
            translated_errors(
                unique=layout.unique, foreign_keys=layout.foreign_keys, connection=connection
            ),
            _driver_cursor(connection, statement) as cursor,
        ):
            cursor.execute(statement, stream=_guarded(chain([first], chunks), failures))
            written = int(cursor.rowcount)
    except BaseException:
        _roll_back(connection, savepoint)
        if failures:
            raise failures[0] from None
        raise
    if failures:  # pragma: no cover - the aborting row always fails the COPY
        _roll_back(connection, savepoint)
        raise failures[0]
    savepoint.commit()
    return written


def _check_ids(cell_ids: Iterable[Any]) -> list[int]:
    if isinstance(cell_ids, str | bytes | Mapping):
        raise InvalidInput("cell_ids must be an iterable of integers")
    try:
        ids = list(cell_ids)
    except TypeError:
        raise InvalidInput(
            f"cell_ids must be an iterable of integers, got {type(cell_ids).__name__}"
        ) from None
    if not set(map(type, ids)) <= {int}:
        for position, value in enumerate(ids):
            if isinstance(value, bool | str) or not hasattr(value, "__index__"):
                raise InvalidInput(
                    f"cell_ids[{position}] must be an integer, got {type(value).__name__}"
                )
        ids = [operator.index(value) for value in ids]  # int subclasses, numpy integers
    if ids and (min(ids) < INT32_MIN or max(ids) > INT32_MAX):
        bad = next(value for value in ids if not INT32_MIN <= value <= INT32_MAX)
        raise InvalidInput(
            f"cell ids must be between {INT32_MIN} and {INT32_MAX}, got {describe(bad)}"
        )
    return ids


@functools.lru_cache(maxsize=256)
def _select_cells_sql(names: tuple[str, ...], dialect: Dialect) -> str:
    """The lookup statement compiled for ``dialect`` (cached: compiling costs ~0.3 ms)."""
    compiled = build_select_cells_by_ids(names).compile(dialect=dialect)
    assert compiled.positiontup == ["ids"], "casdb runs on pg8000 (a positional paramstyle)"
    return compiled.string


def _check_columns(columns: Iterable[str] | None) -> tuple[str, ...]:
    if columns is None:
        return CELL_COLUMN_NAMES
    if isinstance(columns, str | bytes):
        raise InvalidInput("columns must be a list of column names, not one string")
    try:
        given = list(columns)
    except TypeError:
        raise InvalidInput(
            f"columns must be a list of column names, got {type(columns).__name__}"
        ) from None
    unknown = [name for name in given if not isinstance(name, str) or name not in CELL_COLUMN_NAMES]
    if unknown:
        raise InvalidInput(
            f"unknown cells_cellinfo column(s) {', '.join(map(describe, unknown))}; "
            f"valid: {', '.join(CELL_COLUMN_NAMES)}"[:1000]
        )
    return tuple(dict.fromkeys(given))


# --------------------------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------------------------


def create_ingest(
    connection: Connection,
    *,
    cas_ingest_id: str,
    dataset_id: str,
    dataset_version_id: str | None = None,
    uns_metadata: Any = None,
    ingest_timestamp: dt.datetime | None = None,
) -> IngestRecord:
    """Create an ingest and return it.

    uns_metadata None stores {}; ingest_timestamp None stores the server's now (UTC); an
    explicit one must be timezone-aware. Raises InvalidInput (bad argument, before any SQL),
    AlreadyExists(field="cas_ingest_id"), DatabaseError.
    """
    values: dict[str, Any] = {
        "cas_ingest_id": check_text("cas_ingest_id", cas_ingest_id),
        "dataset_id": check_text("dataset_id", dataset_id),
        "dataset_version_id": check_optional_text("dataset_version_id", dataset_version_id),
        "uns_metadata": {} if uns_metadata is None else check_json("uns_metadata", uns_metadata),
    }
    if ingest_timestamp is not None:
        values["ingest_timestamp"] = check_optional_time("ingest_timestamp", ingest_timestamp)
    ingest = fetch_optional(connection, build_create_ingest(values), IngestRecord)
    if ingest is None:
        raise AlreadyExists("an ingest with this cas_ingest_id exists", field="cas_ingest_id")
    return ingest


def get_ingest(connection: Connection, *, cas_ingest_id: str) -> IngestRecord:
    """Return the ingest ``cas_ingest_id``. Raises NotFound, InvalidInput, DatabaseError."""
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    return fetch_one(connection, build_select_ingest(cas_ingest_id), IngestRecord,
                     missing=f"no ingest {describe(cas_ingest_id)}")


def list_ingests(connection: Connection) -> list[IngestRecord]:
    """Return every ingest, ordered by cas_ingest_id. Raises DatabaseError."""
    return fetch_all(connection, build_list_ingests(), IngestRecord)


def delete_ingest(connection: Connection, *, cas_ingest_id: str) -> None:
    """Delete an ingest together with its cells and features, in one statement.

    Returns None. Raises NotFound (unknown ingest; nothing changes), InvalidInput,
    DatabaseError.
    """
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    if execute(connection, build_delete_ingest(cas_ingest_id)).rowcount == 0:
        raise NotFound(f"no ingest {describe(cas_ingest_id)}")


def insert_features(
    connection: Connection, *, rows: Iterable[FeatureRecord | Mapping[str, Any]]
) -> int:
    """Bulk-write features with COPY, streaming ``rows``; return the number of rows written.

    ``rows`` is any iterable (a generator is fine: memory stays bounded) of FeatureRecord or
    mappings with FeatureRecord's field names; cas_feature_index is required (the caller
    assigns the ids); omitted optional keys take the table's defaults. All or nothing, within
    a savepoint: the caller's transaction stays usable after any error. Raises InvalidInput
    (a bad row: the message names its index and field; an unknown key), NotFound (an unknown
    cas_ingest_id), AlreadyExists(field="cas_feature_index"), DatabaseError.
    """
    return _copy(connection, _FEATURE_LAYOUT, rows)


def insert_cells(connection: Connection, *, rows: Iterable[CellRecord | Mapping[str, Any]]) -> int:
    """Bulk-write cells with COPY, streaming ``rows``; return the number of rows written.

    ``rows`` is any iterable (a generator is fine: memory stays bounded) of CellRecord or
    mappings with CellRecord's field names. cas_cell_index, cas_ingest_id and cell_type are
    required (the caller assigns cas_cell_index: the column's sequence is not used); omitted
    optional keys take the table's defaults (obs_metadata_extra {}, is_primary_data True,
    others NULL). Strings must fit varchar(255) and hold no NUL; integers are int32 (numpy
    integers accepted, bools not); JSON must be serialisable with finite floats. All or
    nothing, within a savepoint: the caller's transaction stays usable after any error.
    Raises InvalidInput (a bad row: the message names its index and field), NotFound (an
    unknown cas_ingest_id), AlreadyExists(field="cas_cell_index"), DatabaseError.
    """
    return _copy(connection, _CELL_LAYOUT, rows)


def list_features_for_ingest(connection: Connection, *, cas_ingest_id: str) -> list[FeatureRecord]:
    """Return the features of an ingest ordered by cas_feature_index ([] for an unknown ingest).

    Raises InvalidInput, DatabaseError.
    """
    cas_ingest_id = check_text("cas_ingest_id", cas_ingest_id)
    return fetch_all(connection, build_list_features_for_ingest(cas_ingest_id), FeatureRecord)


def count_cells(connection: Connection, *, cas_ingest_id: str | None = None) -> int:
    """Return the number of cells of one ingest, or of all when cas_ingest_id is None.

    Raises InvalidInput, DatabaseError.
    """
    cas_ingest_id = check_optional_text("cas_ingest_id", cas_ingest_id)
    return int(fetch_scalar(connection, build_count_cells(cas_ingest_id)))


def get_cell_metadata_by_ids(
    connection: Connection,
    *,
    cell_ids: Iterable[int],
    columns: Iterable[str] | None = None,
) -> list[CellMetadata]:
    """Return one CellMetadata per id of ``cell_ids`` that exists, in the order of ``cell_ids``.

    A repeated id is repeated; missing ids are left out. ``columns`` (None: every column) are
    cells_cellinfo column names, in the order ``values`` will hold them; cas_cell_index is
    always set. Any number of ids: they are sent LOOKUP_CHUNK_SIZE at a time, each chunk as
    one int[] parameter (one round trip per chunk). Ids are int32 integers (int subclasses and
    numpy integers too, bools not). Raises InvalidInput (an unknown column, naming the valid
    ones; an id that is not an int32; both before any SQL), DatabaseError.
    """
    names = _check_columns(columns)
    ids = _check_ids(cell_ids)
    if not ids:
        return []
    statement = _select_cells_sql(names, connection.dialect)
    found: list[CellMetadata] = []
    with (
        translated_errors(connection=connection),
        _driver_cursor(connection, statement) as cursor,
        _gc_paused(),
    ):
        for start in range(0, len(ids), LOOKUP_CHUNK_SIZE):
            cursor.execute(statement, (ids[start : start + LOOKUP_CHUNK_SIZE],))
            found.extend(_cell_metadata_from_rows(names, cursor.fetchall()))
    return found


# --------------------------------------------------------------------------------------------
# Index sequences (cas_cell_index / cas_feature_index): for ingests that assign ids
# --------------------------------------------------------------------------------------------

_INDEXED: Final = {"cells": (cells_cellinfo, "cas_cell_index"),
                   "features": (cells_featureinfo, "cas_feature_index")}
_INDEX_CHUNK: Final = 50_000
MAX_RESERVED_INDEXES: Final = 10_000_000
"""Ids one reserve_indexes call takes at most (about 5 s of nextval on the server)."""


def _index_column(table: object) -> tuple[Table, str]:
    if not isinstance(table, str) or table not in _INDEXED:
        raise InvalidInput(f"table must be 'cells' or 'features', got {describe(table)}")
    return _INDEXED[table]


def _index_sequence(table: str) -> Any:
    target, column = _index_column(table)
    return func.pg_get_serial_sequence(target.name, column).cast(postgresql.REGCLASS)


def build_reserve_indexes(table: str, count: int) -> Select[Any]:
    """SELECT the runs (first, last) of ``count`` new values of the table's index sequence.

    nextval is atomic, so concurrent callers never share a value; under concurrency the
    values may come in several runs, which are returned in order.
    """
    values = select(func.nextval(_index_sequence(table)).label("id")).select_from(
        func.generate_series(1, count)
    ).cte("reserved")
    runs = select(
        values.c.id, (values.c.id - func.row_number().over(order_by=values.c.id)).label("run")
    ).cte("runs")
    return (
        select(func.min(runs.c.id), func.max(runs.c.id))
        .group_by(runs.c.run)
        .order_by(func.min(runs.c.id))
    )


def build_advance_index_sequence(table: str, past: int) -> Select[Any]:
    """SELECT setval(sequence, past) only where the sequence is below ``past`` (never back)."""
    sequence = _index_sequence(table)
    return select(func.setval(sequence, past)).where(
        func.coalesce(func.pg_sequence_last_value(sequence), 0) < past
    )


def build_existing_indexes(table: str) -> Select[Any]:
    """SELECT which of the ids bound as ``:ids`` (one int[]) are in the table, ordered."""
    target, column = _index_column(table)
    ids = bindparam("ids", type_=postgresql.ARRAY(Integer))
    return (
        select(target.c[column])
        .where(target.c[column] == func.any(ids))
        .order_by(target.c[column])
    )


def reserve_indexes(connection: Connection, *, table: str, count: int) -> list[range]:
    """Reserve ``count`` ids from the sequence of cells_cellinfo.cas_cell_index (``table``
    "cells") or cells_featureinfo.cas_feature_index ("features"), in one statement.

    Returns the reserved ids as ranges in increasing order (one range unless concurrent
    callers interleaved). Reserved ids stay used even if the transaction rolls back.
    ``count`` is at most MAX_RESERVED_INDEXES. Raises InvalidInput for a bad argument,
    DatabaseError.
    """
    _index_column(table)
    count = check_int("count", count, minimum=0, maximum=MAX_RESERVED_INDEXES)
    if count == 0:
        return []
    reserved = build_reserve_indexes(table, count)
    return fetch_all(connection, reserved, lambda row: range(row[0], row[1] + 1))


def advance_index_sequence(connection: Connection, *, table: str, past: int) -> None:
    """Move the table's index sequence forward so that nextval gives more than ``past``.

    Used after rows with explicit ids were written; never moves the sequence back. Returns
    None. Raises InvalidInput for a bad argument, DatabaseError.
    """
    _index_column(table)
    past = check_int("past", past, minimum=1)
    execute(connection, build_advance_index_sequence(table, past)).all()


def find_existing_indexes(connection: Connection, *, table: str, ids: Iterable[int]) -> list[int]:
    """Return which of ``ids`` are already in the table (cells or features), ordered.

    Raises InvalidInput for a bad argument, DatabaseError.
    """
    _index_column(table)
    wanted = sorted(set(_check_ids(ids)))
    statement = build_existing_indexes(table)
    found: list[int] = []
    with translated_errors(connection=connection):
        for start in range(0, len(wanted), _INDEX_CHUNK):
            chunk = wanted[start : start + _INDEX_CHUNK]
            found.extend(connection.execute(statement, {"ids": chunk}).scalars())
    return found
