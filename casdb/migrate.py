"""Run casdb's alembic migrations from Python: the CLI, adopt and the tests use these.

The migrations live in ``migrations/`` at the repository root and are installed with the
package as ``casdb._migrations``, so an installed wheel migrates as well as a checkout.

Two ways to run them, chosen by what you pass as ``bind``:

* an **Engine** (or a Connection outside a transaction): the online-safe path for a live
  database. Each revision runs in its own transaction; inside a revision every step is its
  own short transaction or autocommit statement (indexes built CONCURRENTLY, foreign keys
  added NOT VALID then validated), under a ``lock_timeout``, and a run that hits the lock
  timeout is retried with backoff. Every step is idempotent: a failed run can be re-run.
* a **Connection inside a transaction**: everything runs in that transaction (plain
  ``CREATE INDEX``), all or nothing, committed by the caller. The locks are held until the
  caller commits: right for an empty or new database, a dry run, or a test; not for a live one.

Version bookkeeping: casdb records its revision in ``casdb.alembic_version`` (schema
``casdb``). ``public.alembic_version`` keeps the original CAS head ``cdfe110d1068``, where
the original CAS services look for it, so that their ``alembic upgrade head`` (with the
original history) stays a no-op on a casdb-managed database during a rolling deploy.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, MetaData, inspect, text

from casdb.errors import ConfigurationError
from casdb.tables import metadata as casdb_metadata

# The live CAS history's head; casdb's baseline reproduces it under the same id.
BASELINE_REVISION = "cdfe110d1068"
# Where casdb records its own revision; public.alembic_version belongs to the original history.
VERSION_TABLE_SCHEMA = "casdb"
VERSION_TABLE = "alembic_version"
LEGACY_VERSION_TABLE = "public.alembic_version"

# Statements that create the original history's version table holding its head (idempotent):
# the baseline revision and a stamp of the baseline run them.
RECORD_ORIGINAL_HEAD = (
    "CREATE TABLE IF NOT EXISTS public.alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
    "INSERT INTO public.alembic_version (version_num) SELECT 'cdfe110d1068' "
    "WHERE NOT EXISTS (SELECT 1 FROM public.alembic_version)",
)
# Statements that start casdb's version table at the baseline (a live CAS database's first
# casdb run, online or in the offline script); idempotent.
START_VERSION_TABLE_AT_BASELINE = (
    "CREATE SCHEMA IF NOT EXISTS casdb",
    "CREATE TABLE IF NOT EXISTS casdb.alembic_version (version_num VARCHAR(32) NOT NULL, "
    "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))",
    "INSERT INTO casdb.alembic_version (version_num) SELECT 'cdfe110d1068' "
    "WHERE NOT EXISTS (SELECT 1 FROM casdb.alembic_version)",
)


@attrs.frozen
class MigrationSettings:
    """Server-side limits for migration statements, and the retry policy.

    ``lock_timeout_ms``: how long one statement may wait for a lock (0: forever), so that a
    migration queued behind a long transaction never blocks a table's readers and writers
    for longer. ``statement_timeout_ms``: 0 (off) unless asked: a CONCURRENTLY index build
    or a VALIDATE on a large table legitimately runs for minutes. ``lock_retries``: how many
    times a run that hit the lock timeout is retried, after ``retry_backoff_s`` seconds,
    doubling each time.
    """

    lock_timeout_ms: int = 2000
    statement_timeout_ms: int = 0
    lock_retries: int = 5
    retry_backoff_s: float = 0.5


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a whole number, not {raw!r}") from None
    if value < 0:
        raise ConfigurationError(f"{name} must be 0 or more, not {value}")
    return value


def migration_settings() -> MigrationSettings:
    """Read the migration settings from the environment.

    ``CASDB_MIGRATION_LOCK_TIMEOUT_MS`` (default 2000), ``CASDB_MIGRATION_STATEMENT_TIMEOUT_MS``
    (default 0, off; a service's ``DB_STATEMENT_TIMEOUT_MS`` does not apply to migrations),
    ``CASDB_MIGRATION_LOCK_RETRIES`` (default 5). Raises ConfigurationError on a bad value.
    """
    defaults = MigrationSettings()
    return MigrationSettings(
        lock_timeout_ms=_env_int("CASDB_MIGRATION_LOCK_TIMEOUT_MS", defaults.lock_timeout_ms),
        statement_timeout_ms=_env_int(
            "CASDB_MIGRATION_STATEMENT_TIMEOUT_MS", defaults.statement_timeout_ms
        ),
        lock_retries=_env_int("CASDB_MIGRATION_LOCK_RETRIES", defaults.lock_retries),
        retry_backoff_s=defaults.retry_backoff_s,
    )


def settings_sql(settings: MigrationSettings) -> list[str]:
    """The SET statements that put ``settings`` in force for a session (or an offline script)."""
    return [
        f"SET lock_timeout = {int(settings.lock_timeout_ms)}",
        f"SET statement_timeout = {int(settings.statement_timeout_ms)}",
    ]


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Leave the original history's ``public.alembic_version`` out of autogenerate."""
    if type_ == "table" and name == VERSION_TABLE:
        return parent_names.get("schema_name") not in (None, "public")
    return True


def context_options() -> dict[str, Any]:
    """The MigrationContext options casdb's env.py and its comparisons share."""
    return {
        "version_table": VERSION_TABLE,
        "version_table_schema": VERSION_TABLE_SCHEMA,
        "compare_type": True,
        "include_name": include_name,
    }


def script_location() -> Path:
    """Return the directory holding env.py and versions/ (installed package or checkout)."""
    spec = importlib.util.find_spec("casdb._migrations")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(bind: Engine | Connection | None = None) -> Config:
    """Return an alembic Config for casdb's migrations, bound to ``bind`` if given."""
    config = Config()
    config.set_main_option("script_location", str(script_location()))
    config.attributes["skip_logging_config"] = True
    if bind is not None:
        config.attributes["connection"] = bind
    return config


def head_revision() -> str:
    """Return the revision id of the single head of casdb's chain."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade(bind: Engine | Connection, revision: str = "head") -> None:
    """Upgrade the database behind ``bind`` to ``revision``.

    ``bind`` an Engine (or a Connection outside a transaction): the online-safe path, each
    step committed as it goes (a failure leaves the steps before it done; re-run to resume).
    A Connection inside a transaction: all in that transaction, committed by the caller.
    Raises alembic's CommandError for an unknown revision, sqlalchemy's DBAPIError when a
    statement fails (after the lock-timeout retries, on the online path).
    """
    command.upgrade(alembic_config(bind), revision)


def downgrade(bind: Engine | Connection, revision: str) -> None:
    """Downgrade the database behind ``bind`` to ``revision`` (``base``: empty).

    Same two paths and errors as :func:`upgrade`; indexes are dropped CONCURRENTLY online.
    """
    command.downgrade(alembic_config(bind), revision)


def downgrade_drops_the_schema(connection: Connection, revision: str) -> bool:
    """Whether downgrading to ``revision`` would undo the baseline (drop every CAS table).

    Raises alembic's CommandError for a revision that is no downgrade target from here.
    """
    script = ScriptDirectory.from_config(alembic_config())
    current = current_revisions(connection)
    try:
        steps = list(script.iterate_revisions(current or None, revision, select_for_downgrade=True))
    except RevisionError as error:  # e.g. -5 with fewer revisions below: as `downgrade` says
        raise CommandError(str(error)) from None
    return any(step.revision == BASELINE_REVISION for step in steps)


def stamp(connection: Connection, revision: str) -> None:
    """Record ``revision`` as casdb's revision without running any migration.

    Stamping the baseline also records the original head in ``public.alembic_version``
    (when missing), where the original CAS services look for it.
    """
    command.stamp(alembic_config(connection), revision)
    if revision == BASELINE_REVISION:
        for statement in RECORD_ORIGINAL_HEAD:
            connection.execute(text(statement))


def has_version_table(connection: Connection) -> bool:
    """Whether casdb's own version table (``casdb.alembic_version``) exists."""
    return bool(inspect(connection).has_table(VERSION_TABLE, schema=VERSION_TABLE_SCHEMA))


def _legacy_revisions(connection: Connection) -> tuple[str, ...]:
    return tuple(MigrationContext.configure(connection).get_current_heads())


def current_revisions(connection: Connection) -> tuple[str, ...]:
    """Return casdb's revisions recorded in the database (empty when not under alembic).

    A database casdb has not touched yet (a live CAS database) has no ``casdb`` version
    table: its revision is what the original history recorded in ``public.alembic_version``.
    """
    context = MigrationContext.configure(connection, opts=context_options())
    heads = tuple(context.get_current_heads())
    if heads or has_version_table(connection):
        return heads
    return _legacy_revisions(connection)


def schema_differences(
    connection: Connection, metadata: MetaData = casdb_metadata
) -> Sequence[Any]:
    """Return alembic's differences between the database and ``metadata`` (empty: in sync)."""
    context = MigrationContext.configure(connection, opts=context_options())
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
