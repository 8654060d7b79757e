"""COPY text: rows (records or mappings) validated and encoded for ``COPY ... FROM STDIN``.

Rows are gathered a chunk at a time (COPY_CHUNK_ROWS) as tuples in column order. The fast
path checks and renders each column of the chunk with C-level builtins (type sets, min/max,
map); any column it cannot vouch for sends the chunk to the per-row path, which converts each
field with full checks, so that the first bad row raises InvalidInput naming index and field.

The codec knows PostgreSQL's text format and the table's column types; it knows nothing of
connections or drivers (casdb._driver sends what it produces).
"""

from __future__ import annotations

import json
import json.encoder
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

import attrs
from sqlalchemy import Boolean, Column, Integer, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from casdb._checks import INT32_MAX, INT32_MIN, check_int, check_json
from casdb.errors import InvalidInput

COPY_CHUNK_ROWS = 5_000
"""Rows per COPY data message (about 1 MB of typical cell metadata)."""

COPY_CHUNK_BYTES = 8_000_000
"""Chunks of large rows shrink so that a COPY data message stays near this size."""

_NULL: Final = "\\N"
_NONE: Final = type(None)
_MISSING: Final = object()
_NULL_FOR_NONE: Final[dict[object, str]] = {None: _NULL}
_BOOL_TEXT: Final[dict[object, str]] = {True: "t", False: "f", None: _NULL}
ABORT_COPY: Final = b"\\N\n"
"""A one-field row: COPY fails with "missing data for column", aborting the statement cleanly
(every casdb table has more than one column)."""
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
        try:  # int subclasses, numpy integers and the like: the one int32 check of casdb
            return str(check_int(name, operator.index(value)))
        except InvalidInput as error:
            raise _BadValue(name, str(error)) from None

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
class CopyLayout:
    """How rows of one table become COPY text: columns, their converters, row defaults."""

    table: Table
    columns: tuple[Column[Any], ...]
    record_type: type
    converters: tuple[Converter, ...]
    renderers: tuple[ColumnRenderer, ...]
    defaults: dict[str, Any]
    from_record: Callable[[Any], tuple[Any, ...]]
    from_mapping: Callable[[Any], tuple[Any, ...]]

    @classmethod
    def of(cls, table: Table, record_type: type) -> CopyLayout:
        """The layout of ``table`` for rows shaped as ``record_type`` (an attrs class).

        The record's fields name the columns, in order; its defaults fill omitted mapping keys.
        """
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
