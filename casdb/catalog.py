"""A comparable snapshot of the public schema, read from PostgreSQL's catalogs.

Used to prove that the baseline migration reproduces a live CAS database, and by ``casdb db
adopt`` to check a live database before stamping it.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from sqlalchemy import Connection, text

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


def snapshot(connection: Connection) -> dict[str, list[list[Any]]]:
    """Return the public schema's tables, columns, constraints, indexes, sequences and enums.

    Every value is JSON-compatible, so a snapshot can be stored and compared later.
    """
    result: dict[str, list[list[Any]]] = {}
    for name, query in _QUERIES.items():
        rows = connection.execute(text(query)).all()
        result[name] = [json.loads(json.dumps(list(row), default=str)) for row in rows]
    return result


def dumps(snap: dict[str, list[list[Any]]]) -> str:
    """Serialise a snapshot as JSON, one catalog row a line (readable diffs)."""
    parts = []
    for kind, rows in snap.items():
        body = ",\n".join("    " + json.dumps(row) for row in rows)
        parts.append(f"  {json.dumps(kind)}: [\n{body}\n  ]")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def baseline_snapshot() -> dict[str, list[list[Any]]]:
    """Return the stored snapshot of a database at the baseline revision (a live CAS schema)."""
    raw = resources.files("casdb").joinpath("baseline_catalog.json").read_text()
    loaded: dict[str, list[list[Any]]] = json.loads(raw)
    return loaded


def differences(
    expected: dict[str, list[list[Any]]], actual: dict[str, list[list[Any]]]
) -> list[str]:
    """Return one human line per catalog entry present on one side only."""
    lines: list[str] = []
    for kind in sorted(set(expected) | set(actual)):
        want = {json.dumps(row) for row in expected.get(kind, [])}
        have = {json.dumps(row) for row in actual.get(kind, [])}
        lines += [f"{kind}: missing {row}" for row in sorted(want - have)]
        lines += [f"{kind}: unexpected {row}" for row in sorted(have - want)]
    return lines
