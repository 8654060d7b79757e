"""Online-safe, idempotent DDL steps for casdb's revisions (used by migrations/versions/).

Online (an Engine, or the offline script): each step is one statement in an autocommit
block, so a lock is held only while that statement runs and never across steps (no lock
ordering against the services' inserts); indexes are built and dropped CONCURRENTLY;
foreign keys and NOT NULL come through a NOT VALID constraint validated afterwards, which
blocks neither reads nor writes. Inside a caller's transaction the same steps run there,
without CONCURRENTLY (which a transaction cannot run).

Every step checks the catalog first or uses IF [NOT] EXISTS, so a run that stopped half way
(lock timeout, lost connection) can be run again. Identifiers are fixed names from the
revision files, never user data.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from alembic import op
from sqlalchemy import text


def is_offline() -> bool:
    """True while writing the offline SQL script (``casdb db sql``)."""
    return bool(op.get_context().as_sql)


def is_online() -> bool:
    """True on the online-safe path (and offline); False inside a caller's transaction."""
    return bool(op.get_context().opts.get("casdb_online", True))


@contextlib.contextmanager
def autocommit() -> Iterator[None]:
    """Alembic's autocommit block online; the caller's transaction otherwise."""
    context = op.get_context()
    if not is_online():
        yield
        return
    with context.autocommit_block():
        if not is_offline():
            # With pg8000, autocommit_block's isolation-level query has just opened a
            # transaction the driver now ignores; end it, or CONCURRENTLY refuses to run.
            op.execute("COMMIT")
        yield


@contextlib.contextmanager
def _waiting_blocks_nobody() -> Iterator[None]:
    """Lift lock_timeout for a statement whose lock blocks no reader or writer.

    CONCURRENTLY and VALIDATE take SHARE UPDATE EXCLUSIVE, and a build waits for every older
    transaction: waiting is harmless, while giving up at the lock timeout would throw away
    (and retry from scratch) a build of minutes on a large table.
    """
    if not is_online():
        yield
        return
    op.execute("SET lock_timeout = 0")
    try:
        yield
    finally:
        restore = int(op.get_context().opts.get("casdb_lock_timeout_ms", 0))
        op.execute(f"SET lock_timeout = {restore}")


def _fetch(query: str, **params: object) -> object:
    return op.get_bind().execute(text(query), params).scalar()


def constraint_exists(table: str, name: str) -> bool:
    """Whether ``name`` is a constraint of public.``table`` (always False offline)."""
    if is_offline():
        return False
    return bool(
        _fetch(
            "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = :name "
            "AND conrelid = to_regclass(:table))",
            name=name,
            table=f"public.{table}",
        )
    )


def rename_constraint(table: str, old: str, new: str) -> None:
    """Rename a constraint (and the index behind it) unless it was renamed already."""
    if is_offline() or constraint_exists(table, old):
        op.execute(f"ALTER TABLE {table} RENAME CONSTRAINT {old} TO {new}")


def create_index(
    name: str,
    table: str,
    columns: Sequence[str],
    *,
    unique: bool = False,
    where: str | None = None,
) -> None:
    """Build an index (CONCURRENTLY online), first dropping an invalid leftover of a build."""
    concurrently = " CONCURRENTLY" if is_online() else ""
    if not is_offline() and _fetch(
        "SELECT NOT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(:name)",
        name=f"public.{name}",
    ):
        with _waiting_blocks_nobody():
            op.execute(f"DROP INDEX{concurrently} IF EXISTS {name}")
    with _waiting_blocks_nobody():
        op.execute(
            f"CREATE {'UNIQUE ' if unique else ''}INDEX{concurrently} IF NOT EXISTS {name} "
            f"ON {table} ({', '.join(columns)})" + (f" WHERE {where}" if where else "")
        )


def drop_index(name: str) -> None:
    """Drop an index (CONCURRENTLY online) if it exists."""
    with _waiting_blocks_nobody():
        op.execute(f"DROP INDEX{' CONCURRENTLY' if is_online() else ''} IF EXISTS {name}")


def add_foreign_key(
    table: str,
    name: str,
    column: str,
    referred: str,
    referred_column: str,
    *,
    ondelete: str | None = None,
) -> None:
    """Add a foreign key NOT VALID (a brief lock, no scan), then VALIDATE it (no blocking)."""
    if not constraint_exists(table, name):
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
            f"REFERENCES {referred} ({referred_column})"
            + (f" ON DELETE {ondelete}" if ondelete else "")
            + " NOT VALID"
        )
    with _waiting_blocks_nobody():
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {name}")


def drop_constraint(table: str, name: str) -> None:
    """Drop a constraint if it exists."""
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}")


def set_not_null(table: str, column: str, check_name: str) -> None:
    """SET NOT NULL without a scan under ACCESS EXCLUSIVE: a validated CHECK proves it first."""
    if not constraint_exists(table, check_name):
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {check_name} "
            f"CHECK ({column} IS NOT NULL) NOT VALID"
        )
    with _waiting_blocks_nobody():
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {check_name}")
    op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET NOT NULL")
    drop_constraint(table, check_name)
