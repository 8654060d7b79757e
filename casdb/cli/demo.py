"""``casdb demo``: sample data and every area's operations, printed (casdb.demo)."""

from __future__ import annotations

import secrets

import click

from casdb import migrate
from casdb.cli._app import State
from casdb.cli._progress import MigrationBar
from casdb.cli._shared import (
    connect,
    database,
    database_options,
    describe,
    out,
    pass_state,
    resolve_config,
)
from casdb.config import reader_config_from_env, reader_variables_set
from casdb.demo import database_state, run_demo
from casdb.engine import create_engine
from casdb.errors import CasdbError


@click.command(name="demo")
@click.option("--yes", is_flag=True, help="run even when the database already holds data")
@click.option("--keep", is_flag=True, help="commit the sample data instead of rolling it back")
@database_options
@pass_state
def demo(state: State, yes: bool, keep: bool) -> None:
    """Fill sample data and run every area's operations, printing the results.

    Migrates the database to head, fills realistic sample data (users with weeks of
    activity, API tokens, models with indexes and a default, an ingest of 20,000 cells) and
    runs every area's operations. With nothing configured it uses the local PostgreSQL
    (started on demand). It writes only into an empty database unless --yes (then its names
    get a random suffix, so that it never collides with rows there), and rolls its rows back
    unless --keep.
    """
    with database(state) as engine:
        target = describe(engine)
        with connect(engine) as conn:
            found = database_state(conn)
        if found != "empty" and not yes:
            raise CasdbError(
                f"{target} already holds data or another schema: the demo writes only into "
                "an empty database; add --yes to run it there anyway (it migrates to head and "
                "rolls its own rows back unless --keep)"
            )
        with connect(engine) as conn:
            before = migrate.current_revisions(conn)
        with MigrationBar(quiet=False, total=migrate.steps_between(before, "head")).shown():
            migrate.upgrade(engine, "head")
        out(f"casdb demo on {target} (schema at head {migrate.head_revision()})")
        tag = "" if found == "empty" else f"-{secrets.token_hex(3)}"
        reader = None
        if reader_variables_set():  # a read replica: the demo reads from it too
            reader = create_engine(reader_config_from_env(resolve_config(state)), read_only=True)
        try:
            run_demo(engine, out=out, keep=keep, tag=tag, reader=reader)
        finally:
            if reader is not None:
                reader.dispose()
