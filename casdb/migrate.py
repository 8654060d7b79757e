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
