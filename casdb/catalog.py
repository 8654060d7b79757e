"""A comparable snapshot of the public schema, read from PostgreSQL's catalogs.

Used to prove that the baseline migration reproduces a live CAS database, and by ``casdb db
adopt`` to check a live database before stamping it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Connection, text

Snapshot = dict[str, list[list[Any]]]
R = TypeVar("R")


class TableRow(NamedTuple):
    """A row of a snapshot's ``tables``."""

    name: str


class ColumnRow(NamedTuple):
    """A row of a snapshot's ``columns`` (information_schema.columns)."""

    table_name: str
    column_name: str
    ordinal_position: int
    data_type: str
    udt_name: str
    character_maximum_length: int | None
    is_nullable: str  # "YES" / "NO"
    column_default: str | None


class ConstraintRow(NamedTuple):
    """A row of a snapshot's ``constraints``."""

    table_name: str
    name: str
    kind: str  # pg_constraint.contype: p, u, f, c, ...
    definition: str


class IndexRow(NamedTuple):
    """A row of a snapshot's ``indexes`` (pg_indexes)."""

    table_name: str
    name: str
    definition: str


class SequenceRow(NamedTuple):
    """A row of a snapshot's ``sequences``, with the column that owns the sequence."""

    name: str
    data_type: str
    start_value: int
    increment_by: int
    min_value: int
    max_value: int
    cache_size: int
    owned_by_table: str | None
    owned_by_column: str | None

    @property
    def parameters(self) -> tuple[Any, ...]:
        """Type, start, increment, min, max, cache."""
        return tuple(self[1:7])


class EnumRow(NamedTuple):
    """A row of a snapshot's ``enums``."""

    name: str
    labels: list[str]


def _typed(kind: str, row: Callable[..., R]) -> Callable[[Snapshot], list[R]]:
    """The accessor of a snapshot's ``kind``: its rows as ``row`` tuples."""

    def read(snap: Snapshot) -> list[R]:
        return [row(*values) for values in snap.get(kind, [])]

    read.__doc__ = f"The snapshot's {kind}, typed."
    return read


tables = _typed("tables", TableRow)
columns = _typed("columns", ColumnRow)
constraints = _typed("constraints", ConstraintRow)
indexes = _typed("indexes", IndexRow)
sequences = _typed("sequences", SequenceRow)
enums = _typed("enums", EnumRow)

_QUERIES = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name,
               character_maximum_length, is_nullable, column_default
        FROM information_schema.columns
        WHERE table_schema = 'public' AND table_name <> 'alembic_version'
        ORDER BY table_name, ordinal_position
    """,
    "constraints": """
        SELECT rel.relname AS table_name, con.conname, con.contype::text,
               pg_get_constraintdef(con.oid) AS definition
        FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid
        WHERE rel.relnamespace = 'public'::regnamespace AND rel.relname <> 'alembic_version'
          AND con.contype <> 'n'  -- PostgreSQL 18 records NOT NULL here; columns cover it
        ORDER BY rel.relname, con.conname
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = 'public' AND tablename <> 'alembic_version'
        ORDER BY tablename, indexname
    """,
    "sequences": """
        SELECT seq.sequencename, seq.data_type::text, seq.start_value, seq.increment_by,
               seq.min_value, seq.max_value, seq.cache_size,
               owner_table.relname AS owned_by_table, owner_column.attname AS owned_by_column
        FROM pg_sequences seq
        JOIN pg_class cls ON cls.relname = seq.sequencename
             AND cls.relnamespace = 'public'::regnamespace
        LEFT JOIN pg_depend dep ON dep.objid = cls.oid AND dep.deptype = 'a'
             AND dep.classid = 'pg_class'::regclass
        LEFT JOIN pg_class owner_table ON owner_table.oid = dep.refobjid
        LEFT JOIN pg_attribute owner_column ON owner_column.attrelid = dep.refobjid
             AND owner_column.attnum = dep.refobjsubid
        WHERE seq.schemaname = 'public'
        ORDER BY seq.sequencename
    """,
    "enums": """
        SELECT typ.typname, array_agg(enum.enumlabel::text ORDER BY enum.enumsortorder)
        FROM pg_type typ JOIN pg_enum enum ON enum.enumtypid = typ.oid
        WHERE typ.typnamespace = 'public'::regnamespace
        GROUP BY typ.typname ORDER BY typ.typname
    """,
    "tables": """
        SELECT c.relname FROM pg_class c
        WHERE c.relnamespace = 'public'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm')
          AND c.relname <> 'alembic_version'
        ORDER BY c.relname
    """,
}


def snapshot(connection: Connection) -> Snapshot:
    """Return the public schema's tables, columns, constraints, indexes, sequences and enums.

    Every value is JSON-compatible, so a snapshot can be stored and compared later; the
    typed accessors (:func:`columns`, :func:`sequences`, ...) name the fields of its rows.
    """
    result: Snapshot = {}
    for name, query in _QUERIES.items():
        rows = connection.execute(text(query)).all()
        result[name] = [json.loads(json.dumps(list(row), default=str)) for row in rows]
    return result


def dumps(snap: Snapshot) -> str:
    """Serialise a snapshot as JSON, one catalog row a line (readable diffs)."""
    parts = []
    for kind, rows in snap.items():
        body = ",\n".join("    " + json.dumps(row) for row in rows)
        parts.append(f"  {json.dumps(kind)}: [\n{body}\n  ]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def baseline_snapshot() -> Snapshot:
    """Return the stored snapshot of a database at the baseline revision (a live CAS schema)."""
    raw = resources.files("casdb").joinpath("baseline_catalog.json").read_text()
    loaded: Snapshot = json.loads(raw)
    return loaded


def differences(expected: Snapshot, actual: Snapshot) -> list[str]:
    """Return one human line per catalog entry present on one side only."""
    lines: list[str] = []
    for kind in sorted(set(expected) | set(actual)):
        want = {json.dumps(row) for row in expected.get(kind, [])}
        have = {json.dumps(row) for row in actual.get(kind, [])}
        lines += [f"{kind}: missing {row}" for row in sorted(want - have)]
        lines += [f"{kind}: unexpected {row}" for row in sorted(have - want)]
    return lines
