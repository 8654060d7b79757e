"""Values of files read by the type of their column in casdb.tables (for casdb.ingest).

One converter per column type (int32, boolean, varchar(n), jsonb) accepts both the text of
CSV and the typed values of Parquet and AnnData (numpy scalars, NaN, pandas' NA); a
:class:`Layout` holds the converters of one table and turns a raw row into the row
``insert_cells``/``insert_features`` take, with the (field, message) of every bad value.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal

import attrs
from sqlalchemy import Boolean, Column, Integer, String, Table
from sqlalchemy.dialects.postgresql import JSONB

from casdb._checks import INT32_MAX, INT32_MIN
from casdb.tables import cells_cellinfo, cells_featureinfo

TableName = Literal["cells", "features"]
_TRUE: Final = {"true", "t", "1", "yes", "y"}
_FALSE: Final = {"false", "f", "0", "no", "n"}


def _is_missing(value: object) -> bool:
    if value is None or (isinstance(value, str) and value == ""):
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return type(value).__name__ in ("NAType", "NaTType")


def to_int32(value: Any) -> int:
    if value.__class__ is str:
        try:
            number = int(value)  # int() allows surrounding whitespace
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
        if value.__class__ is not str:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"expected text, got {type(value).__name__}")
            value = str(value)
        if length is not None and len(value) > length:
            raise ValueError(f"is {len(value)} characters long; the limit is {length}")
        if "\x00" in value:
            raise ValueError("holds a NUL character")
        text: str = value
        return text

    return convert


def jsonable(value: Any) -> Any:
    """Plain JSON values for numpy scalars, arrays and NaN (which JSON cannot hold: null)."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return jsonable(value.tolist())
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
    return jsonable(value)


def _converter(column: Column[Any]) -> Callable[[Any], Any]:
    type_ = column.type
    if isinstance(type_, Boolean):
        return _to_bool
    if isinstance(type_, Integer):
        return to_int32
    if isinstance(type_, JSONB):
        return _to_json
    if isinstance(type_, String):
        return _text_converter(type_.length)
    raise TypeError(f"no file converter for column {column.name} ({type_})")


@attrs.frozen
class Layout:
    """The columns of one table a file may fill, with their converters."""

    name: TableName
    table: Table
    id_column: str
    extra_column: str
    converters: dict[str, Callable[[Any], Any]]
    required: frozenset[str]
    defaulted: frozenset[str]

    @classmethod
    def of(cls, name: TableName) -> Layout:
        table, id_column = (
            (cells_cellinfo, "cas_cell_index")
            if name == "cells"
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
                c.name
                for c in columns
                if not c.nullable and c.server_default is None and c.name != id_column
            ),
            defaulted=frozenset(
                c.name for c in columns if not c.nullable and c.server_default is not None
            ),
        )

    def convert(
        self, raw: Mapping[str, Any], ingest_id: str
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Return the row for insert_cells/insert_features and the (field, error) found."""
        row: dict[str, Any] = {"cas_ingest_id": ingest_id}
        errors: list[tuple[str, str]] = []
        converters = self.converters
        for name, value in raw.items():
            # The common case first: a non-empty text (CSV) or a value that is not missing.
            if value.__class__ is str and value or not _is_missing(value):
                if name == "cas_ingest_id":
                    if value != ingest_id:
                        errors.append(
                            (
                                name,
                                f"{value!r} is not the ingest being filled ({ingest_id!r})"[:200],
                            )
                        )
                    continue
                try:
                    row[name] = converters[name](value)
                except ValueError as error:
                    errors.append((name, str(error)))
            elif name in self.required or name == self.id_column:
                errors.append((name, "is empty, but the column is NOT NULL"))
            elif name not in self.defaulted and name != "cas_ingest_id":
                row[name] = None
        return row, errors
