"""Run casdb's alembic migrations from Python: the CLI and the tests use these.

The migrations live in ``migrations/`` at the repository root and are installed with the
package as ``casdb._migrations``, so an installed wheel migrates as well as a checkout.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, MetaData

from casdb.tables import metadata as casdb_metadata

# The live CAS history's head; casdb's baseline reproduces it under the same id.
BASELINE_REVISION = "cdfe110d1068"


def script_location() -> Path:
    """Return the directory holding env.py and versions/ (installed package or checkout)."""
    spec = importlib.util.find_spec("casdb._migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(connection: Connection | None = None) -> Config:
    """Return an alembic Config for casdb's migrations, bound to ``connection`` if given."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["skip_logging_config"] = True
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """Return the revision id of the single head of casdb's chain."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``connection`` to ``revision``."""
    command.upgrade(alembic_config(connection), revision)


def downgrade(connection: Connection, revision: str) -> None:
    """Downgrade the database behind ``connection`` to ``revision`` (``base``: empty)."""
    command.downgrade(alembic_config(connection), revision)


def stamp(connection: Connection, revision: str) -> None:
    """Record ``revision`` in alembic_version without running any migration."""
    command.stamp(alembic_config(connection), revision)


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """Return the revisions recorded in the database (empty when not under alembic)."""
    return tuple(MigrationContext.configure(connection).get_current_heads())


def schema_differences(
    connection: Connection, metadata: MetaData = casdb_metadata
) -> Sequence[Any]:
    """Return alembic's differences between the database and ``metadata`` (empty: in sync)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


# --- the wording of schema differences (for `casdb db check` and reports) ---------------

_IN_TABLES = "is in casdb.tables but not in the database"
_IN_DB = "is in the database but not in casdb.tables"


def describe_differences(differences: Sequence[Any]) -> list[str]:
    """Return one line of words per difference of :func:`schema_differences`."""
    return [line for item in differences for line in describe_difference(item)]


def describe_difference(item: Any) -> list[str]:
    """Describe one entry of alembic's compare_metadata in words (a list for modify_*)."""
    if isinstance(item, list):
        return [line for sub in item for line in describe_difference(sub)]
    if not isinstance(item, tuple) or not item:
        return [repr(item)]
    try:
        line = _describe_operation(item)
    except (AttributeError, IndexError, ValueError, TypeError):
        line = None
    return [repr(item) if line is None else line]


def _describe_operation(item: tuple[Any, ...]) -> str | None:
    op = item[0]
    where = _IN_TABLES if op.startswith("add") else _IN_DB
    if op in ("add_table", "remove_table"):
        return f"table {item[1].name} {where}"
    if op in ("add_column", "remove_column"):
        return f"column {item[2]}.{item[3].name} ({_type_text(item[3].type)}) {where}"
    if op in ("add_index", "remove_index"):
        index = item[1]
        columns = ", ".join(getattr(e, "name", str(e)) for e in index.expressions)
        unique = "unique index" if index.unique else "index"
        return f"{unique} {index.name} on {index.table.name} ({columns}) {where}"
    if op in ("add_constraint", "remove_constraint", "add_fk", "remove_fk"):
        constraint = item[1]
        columns = ", ".join(c.name for c in constraint.columns)
        kind = "foreign key" if op.endswith("_fk") else type(constraint).__name__
        return f"{kind} {constraint.name} on {constraint.table.name} ({columns}) {where}"
    if op in ("modify_type", "modify_nullable", "modify_default"):
        _, _schema, table, column, _kw, existing, new = item
        if op == "modify_type":
            return (
                f"column {table}.{column} is {_type_text(existing)} in the database, "
                f"{_type_text(new)} in casdb.tables"
            )
        if op == "modify_nullable":
            state = {True: "nullable", False: "NOT NULL"}
            return (
                f"column {table}.{column} is {state[bool(existing)]} in the database, "
                f"{state[bool(new)]} in casdb.tables"
            )
        return (
            f"column {table}.{column} has default {_default_text(existing)} in the database, "
            f"{_default_text(new)} in casdb.tables"
        )
    return None


def _type_text(type_: Any) -> str:
    try:
        return str(type_)
    except Exception:
        return repr(type_)


def _default_text(default: Any) -> str:
    if default is None:
        return "none"
    arg = getattr(default, "arg", default)
    return str(getattr(arg, "text", arg))


def offline_sql(revision_range: str = "head", *, downgrade: bool = False) -> str:
    """Return the SQL script of a revision range (``TO`` or ``FROM:TO``), with no database.

    A downgrade needs ``FROM:TO``. Raises alembic's CommandError for an unknown revision.
    """
    import io

    config = alembic_config()
    buffer = io.StringIO()
    config.output_buffer = buffer
    if downgrade:
        command.downgrade(config, revision_range, sql=True)
    else:
        command.upgrade(config, revision_range, sql=True)
    return buffer.getvalue()


def steps_between(current: Sequence[str], target: str, *, downgrade: bool = False) -> int | None:
    """Return how many migrations take the database from ``current`` to ``target``.

    None when it cannot be told in advance (a relative target such as ``+2``).
    """
    script = ScriptDirectory.from_config(alembic_config())
    here = current[0] if current else "base"
    try:
        if downgrade:
            if here == "base":
                return 0
            return len(list(script.iterate_revisions(here, target)))
        upper = "heads" if target == "head" else target
        return len(list(script.iterate_revisions(upper, here)))
    except Exception:  # noqa: BLE001 - alembic raises several kinds; the count is optional
        return None


def downgrade_drops_everything(current: Sequence[str], target: str) -> bool:
    """Return True when downgrading from ``current`` to ``target`` goes below the baseline
    (which drops every CAS table and its rows)."""
    if not current:
        return False
    if target == "base" or target.endswith("@base"):
        return True
    if target.startswith("-") and target[1:].isdigit():
        script = ScriptDirectory.from_config(alembic_config())
        depth = len(list(script.iterate_revisions(current[0], "base")))
        return int(target[1:]) >= depth
    return False
